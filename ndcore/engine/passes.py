"""The passes of a dissection, run in order, with checkpoints and torch.distributed merging.

    pass 1  forward_pass  every layer through the model: thresholds, top images, the counts of
                          layers with given thresholds; keeps the maps pass 2 may need
    pass 2  tally_pass    the other layers' counts, from the kept maps or the model again

A pass feeds, per layer, the statistics that the table (:mod:`.statistics`) lists for it; it
knows none of them but those it reads at its end (pass 1: the tails give the thresholds).
Every rank runs its shard of the batch grid. At a checkpoint and at the end of a pass the
ranks' states are gathered and merged exactly; rank 0 writes checkpoints
(:mod:`.checkpointer`). Resuming loads the merged state on rank 0 and goes on with the batches
not done yet.

A pass is an object with ``phase`` (its number in the checkpoints), ``layers``,
``run(stats)`` (this rank's batches not done yet) and ``finish(merged)`` (from every rank's
merged statistics, what the later passes need); :class:`Passes` runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ..data.labelspace import LabelSpace
from ..data.probe import ProbeBatch
from ..errors import NdcoreError
from .checkpointer import Checkpointer, Cursor
from .distributed import Dist
from .driver import drive
from .forward_pass import ForwardPass
from .keptmaps import KeptMaps
from .layerstats import PassStats
from .options import DissectOptions
from .stage import Stage
from .statistics import RunContext, fed_by
from .tally_pass import TallyPass

# (pass name, images done, images in this rank's share) -> None
Progress = Callable[[str, int, int], None]


@dataclass
class PassResults:
    """What rank 0 holds after the passes (other ranks get None)."""

    thresholds: Dict[str, torch.Tensor]
    topk: Dict[str, Dict[str, Any]]  # layer -> its topk.npz
    counts: Dict[str, Dict[str, Any]]  # layer -> its counts.npz
    resamples: Dict[str, Dict[str, Any]]  # layer -> its resamples.npz (layers with resamples)
    second_pass: str
    map_store: Optional[Dict[str, int]]  # the kept maps' figures (None: none kept)
    checkpoints: Dict[str, float]  # count and seconds of this process's checkpoints


class Passes:
    """The passes of one rank's run, and what they share: the stage and stream, the kept maps,
    the checkpoints, the cursor, and the context the statistics are made in."""

    def __init__(self, *, stage: Stage, stream, layers: List[str],
                 given: Dict[str, torch.Tensor], options: DissectOptions,
                 labelspace: LabelSpace, dist: Dist, device: torch.device,
                 run_dir: Optional[Path], fingerprint: str,
                 progress: Progress, previous_s: float = 0.0) -> None:
        self.stage, self.stream, self.grid = stage, stream, stream.grid
        self.layers, self.given = layers, given
        self.todo = [l for l in layers if l not in given]  # whose thresholds pass 1 finds
        self.dist, self.progress = dist, progress
        self.context = RunContext(options, labelspace, device, images=self.grid.size,
                                  makes_images=stage.makes_images)
        self.kept = KeptMaps(self.todo, options, device, run_dir, stage.labels_from_stream)
        self.checkpoints = Checkpointer(run_dir, dist, self.grid, fingerprint,
                                        options.checkpoint_every,
                                        passes=2 if self.todo else 1,
                                        store_lengths=self.kept.sync, previous_s=previous_s)
        self.sequence = [ForwardPass(self, layers, self.todo), TallyPass(self, self.todo)]
        self.cursor = Cursor()
        self.finals: Dict[int, PassStats] = {}  # the merged statistics of the finished passes

    def run(self, resume: Optional[Dict[str, Any]]) -> Optional[PassResults]:
        """Every pass (continuing ``resume``, a checkpoint state, on rank 0)."""
        self.cursor = self.dist.broadcast(Cursor.of(resume, second_pass=bool(self.todo)))
        try:
            self.kept.open(self.cursor)
            holds_results = self._run(resume)
        finally:
            map_store = self.kept.close()
        return self._results(map_store) if holds_results else None

    def _run(self, resume: Optional[Dict[str, Any]]) -> bool:
        """The passes not finished yet; True on the rank that holds the results (rank 0)."""
        for position, step in enumerate(self.sequence):
            self._share_thresholds()
            stats = self._stats(step)
            if self.cursor.phase > step.phase:  # finished before the run was resumed
                if resume is not None:
                    stats.load_state_dict(resume[f"pass{step.phase}"])
                self.finals[step.phase] = stats
                continue
            if resume is not None and int(resume["phase"]) == step.phase:
                stats.load_state_dict(resume["stats"])
            step.run(stats)
            later = self.sequence[position + 1:]
            # every rank needs a pass's results for the next pass; only rank 0 the last one's
            merged = self._merge(stats, everywhere=bool(later))
            if merged is None:
                return False
            step.finish(merged)
            merged.drop_means()
            self.finals[step.phase] = merged
            if later:
                self.cursor.phase, self.cursor.done = later[0].phase, []
                self.checkpoints.write(self.cursor, self._stats(later[0]), [], self.finals)
        return True

    def _share_thresholds(self) -> None:
        """What the next statistics may know: the given thresholds in pass 1, every layer's
        (and the best-iou candidates) once pass 1 found them."""
        self.context.thresholds = (dict(self.given) if self.cursor.phase == 1
                                   else self.cursor.thresholds)
        self.context.edges = self.cursor.edges

    def _stats(self, step) -> PassStats:
        return PassStats(step.layers, fed_by(step.phase), self.context)

    # -- what the passes share ---------------------------------------------------------------

    def drive(self, title: str, stats: PassStats, batches, mine: List[int], step,
              consumers) -> None:
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
            if self.checkpoints.due():
                self.checkpoints.write(self.cursor, stats, finished, self.finals)

        self.checkpoints.timer.reset()
        drive(batches, self.grid.steps(self.cursor.done), step, consumers, after_step)

    def _merge(self, stats: PassStats, everywhere: bool) -> Optional[PassStats]:
        """Every rank's state merged: on every rank, or on rank 0 only (None elsewhere)."""
        if not self.dist.active:
            return stats  # one shard: merging it alone would give the same canonical state
        state = stats.state_dict()
        states = self.dist.all_gather(state) if everywhere else self.dist.gather(state)
        if states is None:
            return None
        merged = stats.fresh()
        merged.merge_states(states)
        return merged

    # -- results -----------------------------------------------------------------------------

    def _results(self, map_store: Optional[Dict[str, int]]) -> PassResults:
        """Each layer's records (counts.npz, topk.npz, resamples.npz) from its statistics' final states."""
        records: Dict[str, Dict[str, Dict[str, Any]]] = {"counts": {}, "topk": {},
                                                         "resamples": {}}
        for phase in sorted(self.finals):
            for layer, row, part in self.finals[phase].outputs():
                records[row.record].setdefault(layer, {}).update(row.output(part))
        for layer in self.layers:
            if layer not in records["counts"]:
                raise NdcoreError(f"layer {layer!r}: no counts (no probe image was tallied)")
        return PassResults(self.cursor.thresholds,
                           {l: records["topk"][l] for l in self.layers},
                           {l: records["counts"][l] for l in self.layers},
                           records["resamples"],
                           self.cursor.second_pass or "none", map_store,
                           dict(self.checkpoints.time))
