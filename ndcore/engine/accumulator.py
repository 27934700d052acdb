"""The protocol every per-layer statistic of a pass follows.

    add(maps, batch)       feed one batch: maps [B, U, h, w] float32 of one layer, and the batch
    merge(other)           fold in another shard's statistic (of the same kind and settings)
    state_dict()           a canonical state: the same bits whatever the shards and their order
    load_state_dict(state) restore it

Because states are canonical and merging is exact, a single process (one shard), a resumed run
(the checkpoint's state, then the rest) and a torch.distributed run (every rank's state,
all-gathered and merged) all finish with bit-identical results. The passes find theirs in the
table of :mod:`ndcore.engine.statistics`.
"""

from __future__ import annotations

from typing import Any, Dict, Protocol, runtime_checkable

import torch

from ..data.probe import ProbeBatch


@runtime_checkable
class Accumulator(Protocol):
    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None: ...

    def merge(self, other: "Accumulator") -> None: ...

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


def check_mergeable(a: Any, b: Any, **fields: Any) -> None:
    """Refuse to merge statistics of different kinds or settings (a silent wrong sum)."""
    if type(a) is not type(b):
        raise ValueError(f"cannot merge {type(b).__name__} into {type(a).__name__}")
    for name, value in fields.items():
        other = getattr(b, name)
        if other != value:
            raise ValueError(f"cannot merge {type(a).__name__}s with different {name}: "
                             f"{value} and {other}")
