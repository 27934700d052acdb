"""When a run checkpoints, and what a checkpoint holds (the files: :mod:`.checkpoint`).

A checkpoint is due every ``--checkpoint-every`` seconds (all ranks agree on it, at the end of
the same step) and at the end of every pass but the last. Every rank's pass statistics and
finished batches are gathered; rank 0 merges them and writes:

    fingerprint, batch_size   the run it belongs to, and its batch grid
    phase, done               the pass under way, and its batches done (every rank's)
    stats                     the merged statistics of that pass so far ({layer: {name: state}})
    passN                     the final statistics of each finished pass N (their results)
    thresholds, edges         from pass 2 on: every layer's thresholds, best-iou candidates
    second_pass, map_sizes,   how pass 2 runs (kept maps or the model), and how much of the
    store_lengths             kept-map files the checkpoint covers
    elapsed_s                 run time so far, across resumes

A resumed run reads its :class:`Cursor` from it (rank 0, then broadcast to every rank).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import checkpoint
from .distributed import Dist
from .layerstats import PassStats
from .stream import BatchGrid


@dataclass
class Cursor:
    """Where a run stands; what every rank needs to know to go on."""

    phase: int = 1
    done: List[int] = field(default_factory=list)
    second_pass: Optional[str] = None  # "cache", "forward", or "none" (no pass 2); None: undecided
    thresholds: Dict[str, torch.Tensor] = field(default_factory=dict)
    map_sizes: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    store_lengths: Dict[str, int] = field(default_factory=dict)
    edges: Dict[str, torch.Tensor] = field(default_factory=dict)  # best-iou candidates

    @classmethod
    def of(cls, resume: Optional[Dict[str, Any]], second_pass: bool) -> "Cursor":
        """The cursor of a checkpoint's state, or of a fresh run (``second_pass``: it has
        layers whose thresholds pass 1 must find)."""
        if resume is None:
            return cls(second_pass=None if second_pass else "none")
        return cls(phase=int(resume["phase"]), done=[int(b) for b in resume["done"]],
                   second_pass=resume.get("second_pass"),
                   thresholds=dict(resume.get("thresholds", {})),
                   map_sizes={k: tuple(v) for k, v in resume.get("map_sizes", {}).items()},
                   store_lengths=dict(resume.get("store_lengths", {})),
                   edges=dict(resume.get("edges", {})))


class Checkpointer:
    """Writes the checkpoints of one rank's run (rank 0 writes; the others contribute).

    ``run_dir`` is None on the ranks that do not write (and where checkpoints are off);
    ``store_lengths()`` syncs the kept-map files and says how long they are now.
    """

    def __init__(self, run_dir: Optional[Path], dist: Dist, grid: BatchGrid, fingerprint: str,
                 seconds: float, passes: int, store_lengths: Callable[[], Dict[str, int]],
                 previous_s: float = 0.0) -> None:
        self.run_dir, self.dist, self.grid = run_dir, dist, grid
        self.fingerprint, self.passes = fingerprint, passes
        self.store_lengths = store_lengths
        self.previous_s, self.started = previous_s, time.time()  # run time before a resume
        self.timer = checkpoint.Timer(seconds)
        self.time = {"count": 0, "seconds": 0.0}  # this process's checkpoints

    def due(self) -> bool:
        """Whether every rank checkpoints now (a collective call: every rank makes it)."""
        return self.dist.agree(self.run_dir is not None and self.timer.due())

    def write(self, cursor: Cursor, stats: PassStats, finished: List[int],
              finals: Dict[int, PassStats]) -> None:
        """Checkpoint pass ``cursor.phase`` with its ``stats`` and this rank's ``finished``
        batches (besides ``cursor.done``), and the ``finals`` of the finished passes."""
        if self.run_dir is None and not self.dist.active:
            return
        start = time.perf_counter()
        self._write(cursor, stats, finished, finals)
        self.time["count"] += 1
        self.time["seconds"] += time.perf_counter() - start

    def _write(self, cursor: Cursor, stats: PassStats, finished: List[int],
               finals: Dict[int, PassStats]) -> None:
        states = self.dist.gather(stats.state_dict())
        dones = self.dist.gather(list(finished))
        lengths = self.store_lengths()
        self.timer.reset()
        if states is None or self.run_dir is None:
            return
        merged = stats.fresh()
        merged.merge_states(states)
        done = sorted(set(cursor.done).union(*dones))
        phase = cursor.phase
        state = {"fingerprint": self.fingerprint, "phase": phase,
                 "batch_size": self.grid.batch_size, "done": done,
                 "stats": merged.state_dict(), "second_pass": cursor.second_pass,
                 "map_sizes": {l: list(s) for l, s in cursor.map_sizes.items()},
                 "store_lengths": lengths,
                 "elapsed_s": self.previous_s + time.time() - self.started}
        if phase > 1:
            state["thresholds"] = cursor.thresholds
            state["edges"] = cursor.edges
        for finished_phase, final in finals.items():  # e.g. pass 1's top-k and given counts
            state[f"pass{finished_phase}"] = final.state_dict()
        checkpoint.save(self.run_dir, state, {
            "phase": phase, "passes": self.passes,
            "images_done": self.grid.images_in(done), "images": self.grid.size,
            "batches_done": len(done), "batches": self.grid.num_batches,
            "world_size": self.dist.world, "elapsed_s": state["elapsed_s"]})
