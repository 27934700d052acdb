"""Per-map peaks, computed once per batch and layer and shared by the statistics.

Several pass-1 statistics need each map's maximum: the top-k images rank by it, the quantile
tail looks only inside maps whose peak exceeds the unit's floor, and the kept-map store keeps
only maps whose peak exceeds its bound. Reading a large layer's maps once instead of three times
is a good part of pass 1's cost. The peaks are remembered per tensor object (and its version
counter, so an in-place change is noticed) for as long as that tensor lives.
"""

from __future__ import annotations

import weakref
from typing import Dict, Tuple

import torch

_remembered: Dict[int, Tuple["weakref.ref[torch.Tensor]", int, torch.Tensor]] = {}


def map_peaks(maps: torch.Tensor) -> torch.Tensor:
    """[B, U] the maximum of each map of ``maps`` [B, U, h, w]."""
    key = id(maps)
    entry = _remembered.get(key)
    if entry is not None and entry[0]() is maps and entry[1] == maps._version:
        return entry[2]
    peaks = maps.detach().amax(dim=(2, 3))
    _remembered[key] = (weakref.ref(maps, lambda _, key=key: _remembered.pop(key, None)),
                        maps._version, peaks)
    return peaks
