"""The pass driver: feeds each batch's maps to the layers' accumulators.

It knows nothing about files, progress bars, processes or datasets: batches come from an
iterator, maps and the labelled batch from a callable (a model or generator run, or kept maps
read back), and after every step a callback runs (progress, checkpoints). Steps are counted,
not batches, so that the ranks of a distributed run stay in lock step: a rank with no batch
left still takes part in the step (``after_step(None, None)``), where the callback may run
collective operations.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from ..data.probe import ProbeBatch
from .accumulator import Accumulator

Step = Callable[[ProbeBatch], Tuple[Dict[str, torch.Tensor], ProbeBatch]]
AfterStep = Callable[[Optional[int], Optional[ProbeBatch]], None]


def drive(batches: Iterator[Tuple[int, ProbeBatch]], steps: int, step: Step,
          consumers: Dict[str, List[Accumulator]], after_step: AfterStep) -> None:
    """Run ``steps`` steps; each takes the next (batch id, batch) if any is left."""
    for _ in range(steps):
        item = next(batches, None)
        if item is None:
            after_step(None, None)
            continue
        batch_id, batch = item
        maps, batch = step(batch)
        for layer, accumulators in consumers.items():
            for accumulator in accumulators:
                accumulator.add(maps[layer], batch)
        after_step(batch_id, batch)
