"""The table of statistics: one row per kind of per-layer accumulator of the passes.

A row says which pass feeds the accumulator, when it applies to a layer and how it is made
from the layer's first maps, how a saved state is restored (checkpoints, other ranks' states),
and where its final state goes in the run's results. The passes know no statistic by name:
they make, feed, merge, checkpoint and report whatever rows the table holds for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import torch

from ...data.labelspace import LabelSpace
from ...data.probe import ProbeBatch
from ..accumulator import Accumulator
from ..options import DissectOptions

# The passes, by the number their checkpoints record.
FORWARD_PASS = 1  # every layer through the model: thresholds, top images, given layers' counts
TALLY_PASS = 2  # the layers whose thresholds pass 1 found: counts (from kept maps or the model)


@dataclass
class RunContext:
    """What a statistic may know when it is made for a layer."""

    options: DissectOptions
    labelspace: LabelSpace
    device: torch.device
    images: int  # probe images in the whole run (every rank's share)
    makes_images: bool  # the stage makes its images (a generator): they exist nowhere else
    # the thresholds known so far: the given ones in pass 1, every layer's from pass 2 on
    thresholds: Dict[str, torch.Tensor] = field(default_factory=dict)
    edges: Dict[str, torch.Tensor] = field(default_factory=dict)  # best-iou candidates, pass 2


# (run, layer, first maps [B, U, h, w], first batch) -> an accumulator, or None: not this layer
Make = Callable[[RunContext, str, torch.Tensor, ProbeBatch], Optional[Accumulator]]
# (run, saved state) -> an accumulator with the state's settings, to load the state into
Restore = Callable[[RunContext, Dict[str, Any]], Accumulator]


def whole_state(accumulator: Accumulator) -> Dict[str, Any]:
    return accumulator.state_dict()


@dataclass(frozen=True)
class Statistic:
    """One row of the table."""

    name: str  # its key in pass states and checkpoints (a rename orphans saved checkpoints)
    kind: Type[Accumulator]
    passes: Tuple[int, ...]  # the passes whose batches feed it
    make: Make
    restore: Restore
    # The layer's result that its final state goes into: "counts" (counts.npz, what labels are
    # computed from), "topk" (topk.npz) or "resamples" (resamples.npz: the null's and the
    # bootstrap's counts). None: a means to the pass's end (the tail gives the
    # thresholds), dropped once its pass is over.
    record: Optional[str] = None
    output: Callable[[Accumulator], Dict[str, Any]] = whole_state  # what goes into the record


STATISTICS: Dict[str, Statistic] = {}  # name -> row, in registration order


def register(statistic: Statistic) -> Statistic:
    """Adds a row to the table (each statistic module registers its own)."""
    if statistic.name in STATISTICS:
        raise ValueError(f"a statistic named {statistic.name!r} is registered already")
    STATISTICS[statistic.name] = statistic
    return statistic


def fed_by(phase: int) -> List[Statistic]:
    """The rows of the statistics that pass ``phase`` feeds, in table order."""
    return [s for s in STATISTICS.values() if phase in s.passes]
