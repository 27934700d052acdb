"""The probe stream: batches of (probe indices, images, label-space labels), by rank and cursor.

Batches lie on one global grid, batch b = probe indices [b*B, (b+1)*B), whatever the number of
processes: an image is always run in the same batch, so activations (and everything after) do
not depend on how a run was split or resumed. Rank r of W takes the batches b with b % W == r,
minus those already done (a resumed run's cursor is the set of done batches).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.labelspace import LabelSpace
from ..data.probe import ProbeBatch, ProbeError, ProbeItem, ProbeSource, stack_items
from ..errors import DatasetError

ItemCheck = Callable[[ProbeItem], Optional[str]]  # returns an error line, or None


@dataclass(frozen=True)
class BatchGrid:
    size: int  # probe images in all
    batch_size: int
    rank: int = 0
    world: int = 1

    @property
    def num_batches(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size

    def indices(self, batch: int) -> List[int]:
        return list(range(batch * self.batch_size, min(self.size, (batch + 1) * self.batch_size)))

    def batch_of(self, index: int) -> int:
        return index // self.batch_size

    def todo(self, done: Iterable[int], rank: Optional[int] = None) -> List[int]:
        """Batches of ``rank`` (default: this one) that are not in ``done``."""
        done = set(done)
        r = self.rank if rank is None else rank
        return [b for b in range(r, self.num_batches, self.world) if b not in done]

    def steps(self, done: Iterable[int]) -> int:
        """Lock-step length of a pass: the most batches any rank still has."""
        done = set(done)
        return max((len(self.todo(done, r)) for r in range(self.world)), default=0)

    def images_in(self, batches: Iterable[int]) -> int:
        return sum(len(self.indices(b)) for b in batches)


class _Items(torch.utils.data.Dataset):
    """The DataLoader's dataset: reads what a pass needs and turns labels into label-space
    ids (the labeller stage for datasets; it runs in the loader workers)."""

    def __init__(self, source: ProbeSource, labelspace: LabelSpace, image: bool, labels: bool,
                 check: Optional[ItemCheck]) -> None:
        self.source, self.labelspace = source, labelspace
        self.image, self.labels, self.check = image, labels, check

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> ProbeItem:
        try:
            item = self.source.read(index, image=self.image, labels=self.labels)
        except DatasetError as e:
            return ProbeItem(index=index, error=str(e))
        if item.error:
            return item
        if self.check is not None:
            error = self.check(item)
            if error:
                return ProbeItem(index=index, error=error)
        return self.encode(item)

    def encode(self, item: ProbeItem) -> ProbeItem:
        sh, sw = item.label_size
        planes = item.planes if self.labels and item.planes is not None else \
            np.zeros((0, sh, sw), dtype=np.int32)
        plane_cats = item.plane_categories if self.labels else None
        return ProbeItem(
            index=item.index,
            image=item.image if self.image else None,
            planes=self.labelspace.encode_planes(planes, plane_cats),
            image_labels=self.labelspace.encode_image_labels(item.image_labels,
                                                             item.image_label_categories),
            annotated=item.annotated,
            label_size=(sh, sw),
        )


def _unwrap_worker_error(e: Exception) -> str:
    """DataLoader re-raises worker errors with the worker traceback in the message."""
    msg = str(e).strip()
    if "Original Traceback" in msg:
        msg = msg.splitlines()[-1]
        msg = msg.split(": ", 1)[1] if ": " in msg else msg
    return msg


def _ignore_interrupts(worker_id: int) -> None:
    """A loader worker's start: Ctrl-C is the main process's to handle (it stops the workers).
    A worker that took it would die mid-transfer, and its traceback (or one from the
    main process reading from it) would mix into the command's output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # born with it blocked (below); ignored from now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    sys.excepthook = _quiet_when_main_process_leaves(sys.excepthook)


def _quiet_when_main_process_leaves(hook):
    """A worker's ``sys.excepthook`` that drops lost connections. Only multiprocessing's
    resource sharer (the thread that hands a batch's shared memory to the main process)
    reaches it with one; its peer is the main process, which closes the connection
    mid-handshake when a Ctrl-C ends it. The traceback would follow "interrupted"."""
    def excepthook(kind, value, traceback) -> None:
        if not issubclass(kind, (ConnectionError, EOFError)):
            hook(kind, value, traceback)

    return excepthook


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT blocked while the workers start, so that they are never without the ignoring
    above; a Ctrl-C of that moment reaches this process as soon as they have started."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ProbeStream:
    """Batches of a probe source on a :class:`BatchGrid`, on a device."""

    def __init__(self, source: ProbeSource, labelspace: LabelSpace, grid: BatchGrid,
                 device: torch.device, workers: int = 0,
                 check: Optional[ItemCheck] = None) -> None:
        self.source, self.labelspace, self.grid = source, labelspace, grid
        self.device, self.workers, self.check = device, workers, check

    def batches(self, batch_ids: Sequence[int], image: bool = True,
                labels: bool = True) -> Iterator[Tuple[int, ProbeBatch]]:
        """(batch id, batch on the device) for ``batch_ids``, in that order."""
        if not batch_ids:
            return
        items = _Items(self.source, self.labelspace, image, labels, self.check)
        loader = torch.utils.data.DataLoader(
            items, batch_sampler=[self.grid.indices(b) for b in batch_ids],
            num_workers=self.workers, collate_fn=stack_items,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_interrupts if self.workers else None,
        )
        it = None
        try:
            with _interrupts_held() if self.workers else contextlib.nullcontext():
                it = iter(loader)  # starts the workers
            for batch_id in batch_ids:
                try:
                    batch = next(it)
                except (ProbeError, DatasetError) as e:  # from the collate fn or a worker
                    raise DatasetError(_unwrap_worker_error(e)) from None
                yield batch_id, batch.to(self.device, non_blocking=True)
        finally:
            # Stop the loader's workers now, not at garbage collection (which can block for
            # seconds after an error).
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
