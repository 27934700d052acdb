"""The maps pass 1 keeps for pass 2, so that pass 2 need not run the model again.

Whether to keep them is decided on the first batch (``--second-pass``; "auto": when the worst
case fits in half the free disk). Rank 0 keeps them with the checkpoint (so a resumed run keeps
them too) unless ``--cache-dir`` names a scratch folder; a generator's labels are kept beside
them (a dataset's come from the stream again). The store itself: :mod:`.mapstore`.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..data.probe import ProbeBatch
from . import checkpoint
from .checkpointer import Cursor
from .labelstore import LabelStore
from .layerstats import LayerStats
from .mapstore import MapStore, below_threshold_fill, default_memory_budget
from .options import DissectOptions
from .scratch import ScratchDir
from .statistics.tail import TopTail

LABELS_KEY = "__labels__"  # the label store's length among the kept-map files' lengths
Maps = Dict[str, torch.Tensor]


class KeptMaps:
    """The kept maps of ``layers`` (the layers pass 2 counts) on this rank."""

    def __init__(self, layers: Sequence[str], options: DissectOptions, device: torch.device,
                 run_dir: Optional[Path], labels_from_stream: bool) -> None:
        self.layers, self.options, self.device = list(layers), options, device
        self.run_dir = run_dir  # set on rank 0 when it writes checkpoints
        self.labels_from_stream = labels_from_stream
        self.store: Optional[MapStore] = None
        self.labels: Optional[LabelStore] = None  # generators: their segmentations
        self.scratch: Optional[ScratchDir] = None

    @property
    def persistent(self) -> bool:
        """Rank 0 keeps its maps with the checkpoint (resumable) unless --cache-dir is set."""
        return self.run_dir is not None and not self.options.cache_dir

    def _root(self) -> Path:
        if self.persistent:
            return self.run_dir
        return Path(self.options.cache_dir or tempfile.gettempdir())

    def open(self, cursor: Cursor) -> None:
        """Opens the store if pass 2 reads kept maps (reopened at a checkpoint's lengths)."""
        if cursor.second_pass != "cache" or self.store is not None:
            return
        budget = self.options.cache_memory_mb
        budget = default_memory_budget(self.device) if budget is None else int(budget * 2**20)
        if self.persistent:
            directory = checkpoint.folder(self.run_dir) / "maps"
        else:
            self.scratch = ScratchDir(self.options.cache_dir)
            directory = self.scratch.path
        self.store = MapStore(directory, self.layers, budget)
        if not self.labels_from_stream:
            self.labels = LabelStore(directory)
        if self.persistent and cursor.store_lengths:
            lengths = dict(cursor.store_lengths)
            label_length = lengths.pop(LABELS_KEY, 0)
            self.store.reopen(lengths)
            if self.labels is not None:
                self.labels.reopen(label_length)

    def decide(self, maps: Maps, cursor: Cursor, images: int) -> None:
        """How pass 2 runs, from the first batch's maps: 'cache' when the worst case of kept
        maps over ``images`` fits in half the free disk, else 'forward'."""
        mode = self.options.second_pass
        if self.options.threshold == "best-iou":
            # The IoU histograms count every activation, down to the lowest candidate
            # threshold; kept maps are exact only above the floor of the top-quantile tail.
            mode = "forward"
        if mode == "auto":
            per_image = sum(maps[l][0].numel() * 4 + 8 * maps[l].shape[1] for l in self.layers)
            worst = per_image * images
            root = self._root()
            while not root.exists() and root != root.parent:
                root = root.parent
            free = shutil.disk_usage(root).free
            mode = "cache" if worst < 0.5 * free else "forward"
        cursor.second_pass = mode
        cursor.map_sizes = {l: tuple(maps[l].shape[2:]) for l in self.layers}
        self.open(cursor)

    def keep_labels(self, batch: ProbeBatch) -> None:
        if self.labels is not None:
            self.labels.append(batch)

    def split(self, batch_ids: Sequence[int], indices: Callable[[int], Sequence[int]],
              thresholds: Dict[str, torch.Tensor]) -> Tuple[List[int], List[int]]:
        """(the batches the kept maps and labels serve exactly, the others): pass 2 runs the
        model again for the others (a resumed run, a lost scratch folder, a floor that turned
        out above the final threshold)."""
        def served(b: int) -> bool:
            idx = indices(b)
            return self.store is not None and all(
                self.store.holds(l, idx, thresholds[l]) for l in self.layers) and (
                self.labels_from_stream or (self.labels is not None and self.labels.holds(idx)))

        kept = [b for b in batch_ids if served(b)]
        served_set = set(kept)
        rest = [b for b in batch_ids if b not in served_set]
        if self.store is not None:
            self.store.batches_recomputed = len(rest)
        return kept, rest

    def reader(self, cursor: Cursor) -> Callable[[ProbeBatch], Tuple[Maps, ProbeBatch]]:
        """A pass-2 step from the kept maps: a streamed batch -> (maps, labelled batch)."""
        fills = {l: below_threshold_fill(cursor.thresholds[l]).to(self.device)
                 for l in self.layers}

        def read(batch: ProbeBatch) -> Tuple[Maps, ProbeBatch]:
            if not self.labels_from_stream:
                batch = self.labels.get(batch.indices, batch.images, self.device)
            maps = {l: self.store.dense(l, batch.indices, cursor.map_sizes[l], fills[l],
                                        self.device)
                    for l in self.layers}
            return maps, batch

        return read

    def sync(self) -> Dict[str, int]:
        """The kept files' lengths for a checkpoint ({} unless they are kept with it)."""
        lengths: Dict[str, int] = {}
        if self.persistent and self.store is not None:
            lengths = self.store.sync()
            if self.labels is not None:
                lengths[LABELS_KEY] = self.labels.sync()
        return lengths

    def close(self) -> Optional[Dict[str, int]]:
        """Closes the stores; the map store's figures for config.json (None: none kept)."""
        figures = None
        if self.store is not None:
            figures = self.store.stats()
            self.store.close()
        if self.labels is not None:
            self.labels.close()
        if self.scratch is not None:
            self.scratch.close()
        return figures


class KeepMaps:
    """Pass-1 consumer: hands a layer's maps to the kept-map store (if the run keeps maps),
    with a floor per unit under which nothing is kept.

    The provable floor, the tail's keep-th largest value so far, is loose early in a pass:
    after a tenth of the data it sits near the top-5% value, not the top-0.5% one, and every
    batch kept then holds ten times what the threshold needs. So the floor is *speculative*:
    the value that three times the expected number of values so far exceed (about the top
    1.5% of what has been seen), or the provable floor once that is higher. The store records the
    floor of every batch; pass 2 uses a batch's kept maps only where that floor turns out to
    be at most the final threshold, and runs the model again for the (rare) others. Exact
    either way, and a few times less to keep.
    """

    REFRESH = 8  # batches between two estimates (each costs a k-th value over the tail)
    MARGIN = 3  # the speculative floor: the value that MARGIN x the expected count exceeds

    def __init__(self, kept: KeptMaps, layer: str, stats: LayerStats,
                 samples_per_unit: Callable[[torch.Tensor, ProbeBatch], int]) -> None:
        self.kept, self.layer, self.stats = kept, layer, stats
        self.samples_per_unit = samples_per_unit  # in the whole pass (all shards)
        self._speculative: Optional[torch.Tensor] = None
        self._age = self._batches = 0

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        store = self.kept.store
        if store is None:
            return
        tail = self.stats.get(TopTail)
        # early estimates rest on few values: refresh them every batch at first
        if self._batches == 0 or self._age >= min(self.REFRESH, self._batches // 2 + 1):
            total = self.samples_per_unit(maps, batch)
            rank = math.ceil(self.MARGIN * tail.keep * tail.count / max(total, 1))
            # from a third of the pass on, the estimate is the provable floor: no k-th value
            self._speculative = tail.value_at_rank(max(rank, 1)) if rank < tail.keep else None
            self._age = 0
        self._age += 1
        self._batches += 1
        floor = tail.floor if self._speculative is None else torch.maximum(tail.floor,
                                                                          self._speculative)
        store.append(self.layer, maps, batch.indices, floor)
