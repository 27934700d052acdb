"""The two passes of a dissection, with checkpoints and torch.distributed merging.

Pass 1 runs the model once over the probe set: per layer, the exact quantile tail (thresholds),
the top-k images, and the counts of layers whose thresholds were given; it keeps the maps that
can still cross their threshold. Pass 2 counts the other layers against their thresholds, from
the kept maps or by running the model again.

Every rank runs its shard of the batch grid. At a checkpoint and at the end of a pass the
ranks' states are gathered and merged exactly; rank 0 writes checkpoints. Resuming loads the
merged state on rank 0 and goes on with the batches not done yet.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..data.labelspace import LabelSpace
from ..data.probe import ProbeBatch
from ..errors import NdcoreError
from . import checkpoint
from .counts import TallyCounts
from .histogram import IoUHistogram, ValueSample
from .distributed import Dist
from .driver import drive
from .labelstore import LabelStore
from .layerstats import KeepMaps, PassStats
from .mapstore import MapStore, below_threshold_fill, default_memory_budget
from .options import DissectOptions
from .scratch import ScratchDir
from .stage import Stage
from .tail import TopTail, tail_size
from .topk import TopKImages

# (pass name, images done, images in this rank's share) -> None
Progress = Callable[[str, int, int], None]
LABELS_KEY = "__labels__"  # the label store's length among the kept-map files' lengths


@dataclass
class PassResults:
    """What rank 0 holds after both passes (other ranks get None)."""

    thresholds: Dict[str, torch.Tensor]
    topk: Dict[str, Dict[str, Any]]
    counts: Dict[str, Dict[str, Any]]
    second_pass: str
    map_store: Optional[Dict[str, int]] = None


@dataclass
class Cursor:
    """Where a run stands; what every rank needs to know to go on."""

    phase: int = 1
    done: List[int] = field(default_factory=list)
    second_pass: Optional[str] = None
    thresholds: Dict[str, torch.Tensor] = field(default_factory=dict)
    map_sizes: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    store_lengths: Dict[str, int] = field(default_factory=dict)
    edges: Dict[str, torch.Tensor] = field(default_factory=dict)  # best-iou candidates


class TwoPasses:
    def __init__(self, *, stage: Stage, stream, layers: List[str],
                 given: Dict[str, torch.Tensor], options: DissectOptions,
                 labelspace: LabelSpace, dist: Dist, device: torch.device,
                 run_dir: Optional[Path], fingerprint: str,
                 progress: Progress, previous_s: float = 0.0) -> None:
        self.stage, self.stream, self.grid = stage, stream, stream.grid
        self.layers, self.given, self.options = layers, given, options
        self.todo = [l for l in layers if l not in given]
        self.labelspace, self.dist, self.device = labelspace, dist, device
        self.best_iou = options.threshold == "best-iou"
        self.run_dir = run_dir  # set on rank 0 when it writes checkpoints
        self.fingerprint, self.progress = fingerprint, progress
        self.previous_s, self.started = previous_s, time.time()  # run time before a resume
        self.timer = checkpoint.Timer(options.checkpoint_every)
        self.checkpoint_time = {"count": 0, "seconds": 0.0}  # this process's checkpoints
        self.store: Optional[MapStore] = None
        self.labels: Optional[LabelStore] = None  # generators: their segmentations, for pass 2
        self.scratch: Optional[ScratchDir] = None
        self.cursor = Cursor()
        self._final1: Optional[PassStats] = None  # pass 1's merged statistics, once known

    # -- accumulators ------------------------------------------------------------------------

    def _make_pass1(self, layer: str, maps: torch.Tensor, batch: ProbeBatch):
        units = maps.shape[1]
        parts: Dict[str, Any] = {"topk": TopKImages(units, self.options.topk,
                                                     keep_images=self.stage.makes_images)}
        if layer in self.given:
            thr = self.given[layer]
            if thr.numel() != units:
                raise NdcoreError(f"layer {layer!r} has {units} units but its thresholds have "
                                  f"{thr.numel()} values")
            parts["counts"] = TallyCounts(thr, self.labelspace, self.device)
        else:
            upsampled = self.options.quantile_on == "upsampled"
            h, w = batch.label_size if upsampled else maps.shape[2:]
            keep = tail_size(self.grid.size * h * w, self.options.quantile)
            parts["tail"] = TopTail(units, keep, self.device, upsampled=upsampled)
            if self.best_iou:
                parts["sample"] = ValueSample.for_run(units, self.grid.size,
                                                      maps.shape[2] * maps.shape[3])
        return parts

    def _from_state(self, name: str, state: Dict[str, Any]):
        if name == "tail":
            acc = TopTail(int(state["num_units"]), int(state["keep"]), self.device)
        elif name == "topk":
            acc = TopKImages(int(state["num_units"]), int(state["k"]),
                             bool(state.get("keep_images", False)))
        elif name == "counts":
            acc = TallyCounts(torch.as_tensor(state["thresholds"]), self.labelspace, self.device)
        elif name == "sample":
            acc = ValueSample(int(state["num_units"]), int(state["stride"]), int(state["step"]))
        elif name == "hist":
            acc = IoUHistogram(torch.as_tensor(state["edges"]), int(state["num_ids"]),
                               self.device)
        else:
            raise ValueError(f"unknown statistic {name!r} in a saved state")
        acc.load_state_dict(state)
        return acc

    def _make_pass2(self, layer: str, maps: torch.Tensor, batch: ProbeBatch):
        parts = {"counts": TallyCounts(self.cursor.thresholds[layer], self.labelspace,
                                       self.device)}
        if self.best_iou:
            parts["hist"] = IoUHistogram(self.cursor.edges[layer], self.labelspace.num_ids,
                                         self.device)
        return parts

    def _pass_stats(self, which: int) -> PassStats:
        if which == 1:
            return PassStats(self.layers, self._make_pass1, self._from_state)
        return PassStats(self.todo, self._make_pass2, self._from_state)

    # -- the run -----------------------------------------------------------------------------

    def run(self, resume: Optional[Dict[str, Any]]) -> Optional[PassResults]:
        """Both passes (continuing ``resume``, a checkpoint state, on rank 0)."""
        self.cursor = self.dist.broadcast(self._cursor_of(resume))
        try:
            self._open_store()
            if self.cursor.phase == 1:
                pass1 = self._pass_stats(1)
                if resume is not None:
                    pass1.load_state_dict(resume["stats"])
                self._pass1(pass1)
                final1 = self._finish_pass1(pass1)
            else:
                final1 = self._final1 = self._pass_stats(1)
                if resume is not None:
                    final1.load_state_dict(resume["pass1"])
            pass2 = self._pass_stats(2)
            if resume is not None and int(resume["phase"]) == 2:
                pass2.load_state_dict(resume["stats"])
            if self.todo:
                self._pass2(pass2)
            merged2 = self._merge(pass2, 2, everywhere=False)
            if not self.dist.is_writer:
                return None
            return self._results(final1, merged2)
        finally:
            if self.store is not None:
                self.map_store_stats = self.store.stats()
                self.store.close()
            if self.labels is not None:
                self.labels.close()
            if self.scratch is not None:
                self.scratch.close()

    def _cursor_of(self, resume: Optional[Dict[str, Any]]) -> Cursor:
        if resume is None:
            return Cursor(second_pass=None if self.todo else "none")
        return Cursor(phase=int(resume["phase"]), done=[int(b) for b in resume["done"]],
                      second_pass=resume.get("second_pass"),
                      thresholds={k: v for k, v in resume.get("thresholds", {}).items()},
                      map_sizes={k: tuple(v) for k, v in resume.get("map_sizes", {}).items()},
                      store_lengths=dict(resume.get("store_lengths", {})),
                      edges=dict(resume.get("edges", {})))

    # -- kept maps ---------------------------------------------------------------------------

    @property
    def _store_persistent(self) -> bool:
        """Rank 0 keeps its maps with the checkpoint (resumable) unless --cache-dir is set."""
        return self.run_dir is not None and not self.options.cache_dir

    def _store_root(self) -> Path:
        if self._store_persistent:
            return self.run_dir
        return Path(self.options.cache_dir or tempfile.gettempdir())

    def _open_store(self) -> None:
        if self.cursor.second_pass != "cache" or self.store is not None:
            return
        budget = self.options.cache_memory_mb
        budget = default_memory_budget(self.device) if budget is None else int(budget * 2**20)
        if self._store_persistent:
            directory = checkpoint.folder(self.run_dir) / "maps"
        else:
            self.scratch = ScratchDir(self.options.cache_dir)
            directory = self.scratch.path
        self.store = MapStore(directory, self.todo, budget)
        if not self.stage.labels_from_stream:
            self.labels = LabelStore(directory)
        if self._store_persistent and self.cursor.store_lengths:
            lengths = dict(self.cursor.store_lengths)
            label_length = lengths.pop(LABELS_KEY, 0)
            self.store.reopen(lengths)
            if self.labels is not None:
                self.labels.reopen(label_length)

    def _decide_second_pass(self, maps: Dict[str, torch.Tensor]) -> None:
        """'cache' when the worst case of kept maps fits in half the free disk, else 'forward'."""
        mode = self.options.second_pass
        if self.best_iou:
            # The IoU histograms count every activation, down to the lowest candidate
            # threshold; kept maps are exact only above the floor of the top-quantile tail.
            mode = "forward"
        if mode == "auto":
            per_image = sum(maps[l][0].numel() * 4 + 8 * maps[l].shape[1] for l in self.todo)
            worst = per_image * self.grid.size
            root = self._store_root()
            while not root.exists() and root != root.parent:
                root = root.parent
            free = shutil.disk_usage(root).free
            mode = "cache" if worst < 0.5 * free else "forward"
        self.cursor.second_pass = mode
        self.cursor.map_sizes = {l: tuple(maps[l].shape[2:]) for l in self.todo}
        self._open_store()

    # -- pass 1 ------------------------------------------------------------------------------

    def _pass1(self, stats: PassStats) -> None:
        done = set(self.cursor.done)
        mine = self.grid.todo(done)
        consumers: Dict[str, list] = {l: [stats[l]] for l in self.layers}
        upsampled = self.options.quantile_on == "upsampled"

        def samples_per_unit(maps: torch.Tensor, batch: ProbeBatch) -> int:
            h, w = batch.label_size if upsampled else maps.shape[2:]
            return self.grid.size * h * w

        for layer in self.todo:
            consumers[layer].append(KeepMaps(lambda: self.store, layer, stats[layer],
                                             samples_per_unit))
        title = "pass 1/2: forward, thresholds" if self.todo else "single pass: forward, tally"
        batches = self.stream.batches(mine, image=True, labels=bool(self.given))

        def keep_labels(batch: ProbeBatch) -> None:
            if self.labels is not None:
                self.labels.append(batch)

        with self.stage.capturing(self.layers, on_labels=keep_labels) as run:
            def step(batch: ProbeBatch):
                if self.cursor.second_pass is None:
                    maps, labelled = run(batch)
                    self._decide_second_pass(maps)
                    keep_labels(labelled)  # the store did not exist yet for this batch
                    return maps, labelled
                return run(batch)

            self._drive(1, title, stats, batches, mine, step, consumers)

    def _drive(self, phase: int, title: str, stats: PassStats, batches, mine: List[int],
               step, consumers) -> None:
        """Run a pass's steps, with progress and checkpoints after each."""
        share = self.grid.images_in(self.grid.todo(()))
        done_images = share - self.grid.images_in(mine)
        finished: List[int] = []
        self.progress(title, done_images, share)

        def after_step(batch_id: Optional[int], batch: Optional[ProbeBatch]) -> None:
            nonlocal done_images
            if batch_id is not None:
                finished.append(batch_id)
                done_images += len(batch)
                self.progress(title, done_images, share)
            if self.dist.agree(self.run_dir is not None and self.timer.due()):
                self._checkpoint(phase, stats, finished)

        self.timer.reset()
        drive(batches, self.grid.steps(self.cursor.done), step, consumers, after_step)

    def _finish_pass1(self, stats: PassStats) -> PassStats:
        """Merge every rank's pass-1 state on every rank; thresholds; a phase-2 checkpoint."""
        merged = self._merge(stats, 1, everywhere=True)
        thresholds = dict(self.given)
        for layer in self.todo:
            thresholds[layer] = merged.part(layer, "tail").quantile(self.options.quantile)
            if self.best_iou:
                sample = merged.part(layer, "sample")
                self.cursor.edges[layer] = sample.edges(thresholds[layer].cpu())
        for layer in self.layers:  # the tails and samples are not needed any more
            parts = merged[layer].parts
            if parts is not None:
                parts.pop("tail", None)
                parts.pop("sample", None)
        self.cursor.thresholds = {l: t.to("cpu") for l, t in thresholds.items()}
        self.cursor.phase, self.cursor.done = 2, []
        self._final1 = merged
        self._checkpoint(2, self._pass_stats(2), [])
        return merged

    # -- pass 2 ------------------------------------------------------------------------------

    def _pass2(self, stats: PassStats) -> None:
        done = set(self.cursor.done)
        mine = self.grid.todo(done)
        store, labels = self.store, self.labels
        from_stream = self.stage.labels_from_stream

        def kept(b: int) -> bool:
            idx = self.grid.indices(b)
            return store is not None and all(
                store.holds(l, idx, self.cursor.thresholds[l]) for l in self.todo) and (
                from_stream or (labels is not None and labels.holds(idx)))

        cached = [b for b in mine if kept(b)]
        cached_set = set(cached)
        rest = [b for b in mine if b not in cached_set]
        if store is not None:  # batches the kept maps could not serve exactly (or had not)
            store.batches_recomputed = len(rest)
        batches = itertools.chain(self.stream.batches(cached, image=False, labels=from_stream),
                                  self.stream.batches(rest, image=True))
        fills = {l: below_threshold_fill(self.cursor.thresholds[l]).to(self.device)
                 for l in self.todo}
        title = "pass 2/2: tally (kept maps)" if cached else "pass 2/2: forward, tally"
        with self.stage.capturing(self.todo) as run:
            def step(batch: ProbeBatch):
                if self.grid.batch_of(int(batch.indices[0])) not in cached_set:
                    return run(batch)
                if not from_stream:
                    batch = labels.get(batch.indices, batch.images, self.device)
                maps = {l: store.dense(l, batch.indices, self.cursor.map_sizes[l], fills[l],
                                       self.device)
                        for l in self.todo}
                return maps, batch

            self._drive(2, title, stats, batches, mine, step,
                        {l: [stats[l]] for l in self.todo})

    # -- merging and checkpoints -------------------------------------------------------------

    def _merge(self, stats: PassStats, which: int, everywhere: bool) -> Optional[PassStats]:
        """Every rank's state merged: on every rank, or on rank 0 only (None elsewhere)."""
        if not self.dist.active:
            return stats  # one shard: merging it alone would give the same canonical state
        state = stats.state_dict()
        states = self.dist.all_gather(state) if everywhere else self.dist.gather(state)
        if states is None:
            return None
        merged = self._pass_stats(which)
        merged.merge_states(states)
        return merged

    def _checkpoint(self, phase: int, stats: PassStats, finished: List[int]) -> None:
        """Gather every rank's state and cursor; rank 0 writes them merged (and times it)."""
        if self.run_dir is None and not self.dist.active:
            return
        start = time.perf_counter()
        self._write_checkpoint(phase, stats, finished)
        self.checkpoint_time["count"] += 1
        self.checkpoint_time["seconds"] += time.perf_counter() - start

    def _write_checkpoint(self, phase: int, stats: PassStats, finished: List[int]) -> None:
        states = self.dist.gather(stats.state_dict())
        dones = self.dist.gather(list(finished))
        lengths = {}
        if self._store_persistent and self.store is not None:
            lengths = self.store.sync()
            if self.labels is not None:
                lengths[LABELS_KEY] = self.labels.sync()
        self.timer.reset()
        if states is None or self.run_dir is None:
            return
        merged = self._pass_stats(phase)
        merged.merge_states(states)
        done = sorted(set(self.cursor.done).union(*dones))
        state = {"fingerprint": self.fingerprint, "phase": phase,
                 "batch_size": self.grid.batch_size, "done": done,
                 "stats": merged.state_dict(), "second_pass": self.cursor.second_pass,
                 "map_sizes": {l: list(s) for l, s in self.cursor.map_sizes.items()},
                 "store_lengths": lengths,
                 "elapsed_s": self.previous_s + time.time() - self.started}
        if phase == 2:
            state["thresholds"] = self.cursor.thresholds
            state["edges"] = self.cursor.edges
            state["pass1"] = self._final1.state_dict()  # top-k images, given layers' counts
        checkpoint.save(self.run_dir, state, {
            "phase": phase, "passes": 2 if self.todo else 1,
            "images_done": self.grid.images_in(done), "images": self.grid.size,
            "batches_done": len(done), "batches": self.grid.num_batches,
            "world_size": self.dist.world, "elapsed_s": state["elapsed_s"]})

    # -- results -----------------------------------------------------------------------------

    def _results(self, final1: PassStats, merged2: Optional[PassStats]) -> PassResults:
        counts = {}
        for layer in self.layers:
            source = final1 if layer in self.given else merged2
            part = source.part(layer, "counts") if source is not None else None
            if part is None:
                raise NdcoreError(f"layer {layer!r}: no counts (no probe image was tallied)")
            counts[layer] = part.state_dict()
            hist = source.part(layer, "hist") if layer not in self.given else None
            if hist is not None:
                state = hist.state_dict()
                counts[layer]["hist_edges"] = state["edges"].numpy()
                counts[layer]["hist"] = state["hist"].numpy()
        topk = {l: final1.part(l, "topk").state_dict() for l in self.layers}
        return PassResults(self.cursor.thresholds, topk, counts,
                           self.cursor.second_pass or "none")
