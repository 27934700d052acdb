"""The selection ops: what pass 1 keeps of a batch of maps, in one read of it, and pass 2's maps
made from that again.

The first two take maps [B, U, h, w] and a per-unit value [U] (float32, on one device) and keep
the few percent of the maps above it:

``values_above(maps, floor) -> (values, counts)``
    ``counts`` [U] int64: how many map values ``maps[b, u, y, x] > floor[u]`` each unit has;
    ``values`` [U, max(counts)] float32: row u holds unit u's, in (b, y, x) order, then -inf
    (which is above no floor, so the padding is never a value). The quantile tail's candidates
    (engine/tail.py). Values are returned as stored (-0.0 stays).

``kept_cells(maps, bound) -> (rows, units, positions, values)``
    The kept maps: the (b, u) pairs, in (b, u) order, whose map has a value ``> bound[u]``, as
    ``rows`` and ``units`` [K] int64. Of those maps, flattened to [K * h * w], the ``positions``
    [P] int32 (ascending) of every cell within one step (the 3x3 neighbourhood) of a value above
    the bound - the cells a bilinear upsampling can read next to such a value - and their
    ``values`` [P] float32. The kept-map store (engine/mapstore.py). maps may hold at most
    2^31 - 1 values.

``fill_cells(rows, units, positions, values, fill, num_images, h, w) -> maps``
    The inverse of ``kept_cells``: maps [num_images, U, h, w] (U = ``fill``'s length) equal to
    ``fill[u]`` everywhere except the given cells of the kept maps (rows[k], units[k]), which
    get ``values``. Each kept map once, in (row, unit) order; positions strictly increasing.

NaN is above nothing. The CPU kernels are compiled (csrc/cpu/select_cpu.cpp); on other devices
the op runs its reference below (on a GPU its gathers are fast), so every device accepts and
rejects the same inputs (checks.check_select_args, the mirror of csrc/select.cpp).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from .checks import (KEPT_CELLS, VALUES_ABOVE, check_fill_cells_args, check_fill_cells_values,
                     check_select_args)
from .extension import _C


def values_above_reference(maps: torch.Tensor,
                           floor: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The definition of ``values_above`` (and its kernel on devices other than the CPU)."""
    check_select_args(VALUES_ABOVE, maps, floor, "floor")
    b, u, h, w = maps.shape
    by_unit = maps.transpose(0, 1).reshape(u, b * h * w)
    above = by_unit > floor[:, None]
    counts = above.sum(1)
    values = torch.full((u, int(counts.max()) if u else 0), -math.inf, device=maps.device)
    rows, _ = above.nonzero(as_tuple=True)
    values[rows, (above.cumsum(1) - 1)[above]] = by_unit[above]
    return values, counts


def kept_cells_reference(maps: torch.Tensor, bound: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The definition of ``kept_cells`` (and its kernel on devices other than the CPU)."""
    check_select_args(KEPT_CELLS, maps, bound, "bound")
    above = maps > bound[None, :, None, None]
    rows, units = above.flatten(2).any(2).nonzero(as_tuple=True)
    positions = torch.zeros(0, dtype=torch.int64, device=maps.device)
    if rows.numel():  # (max_pool2d refuses empty batches)
        near = torch.nn.functional.max_pool2d(above[rows, units][:, None].float(), 3, stride=1,
                                              padding=1)[:, 0] > 0
        positions = near.reshape(-1).nonzero()[:, 0]
    values = maps[rows, units].reshape(-1)[positions]
    return rows, units, positions.to(torch.int32), values


def fill_cells_reference(rows: torch.Tensor, units: torch.Tensor, positions: torch.Tensor,
                         values: torch.Tensor, fill: torch.Tensor, num_images: int, h: int,
                         w: int) -> torch.Tensor:
    """The definition of ``fill_cells`` (and its kernel on devices other than the CPU)."""
    check_fill_cells_args(rows, units, positions, values, fill, num_images, h, w)
    check_fill_cells_values(rows, units, positions, fill, num_images, h, w)
    out = fill[None, :, None, None].expand(num_images, fill.shape[0], h, w).contiguous()
    kept = out[rows, units]  # [K, h, w], a copy
    kept.view(-1)[positions.long()] = values
    out[rows, units] = kept
    return out


if _C is not None:

    # Output sizes depend on the values: the fakes give them as unbacked sizes.

    @torch.library.register_fake("ndcore::values_above")
    def _values_above_fake(maps, floor):
        check_select_args(VALUES_ABOVE, maps, floor, "floor")
        most = torch.library.get_ctx().new_dynamic_size()
        return (maps.new_empty((maps.shape[1], most)),
                maps.new_empty((maps.shape[1],), dtype=torch.int64))

    @torch.library.register_fake("ndcore::kept_cells")
    def _kept_cells_fake(maps, bound):
        check_select_args(KEPT_CELLS, maps, bound, "bound")
        ctx = torch.library.get_ctx()
        k, p = ctx.new_dynamic_size(), ctx.new_dynamic_size()
        return (maps.new_empty((k,), dtype=torch.int64), maps.new_empty((k,), dtype=torch.int64),
                maps.new_empty((p,), dtype=torch.int32), maps.new_empty((p,)))

    @torch.library.register_fake("ndcore::fill_cells")
    def _fill_cells_fake(rows, units, positions, values, fill, num_images, h, w):
        check_fill_cells_args(rows, units, positions, values, fill, num_images, h, w)
        return fill.new_empty((num_images, fill.shape[0], h, w))

    torch.library.register_kernel("ndcore::values_above", "cuda", values_above_reference)
    torch.library.register_kernel("ndcore::kept_cells", "cuda", kept_cells_reference)
    torch.library.register_kernel("ndcore::fill_cells", "cuda", fill_cells_reference)


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(dtype=torch.float32).contiguous()


def values_above(maps: torch.Tensor, floor: torch.Tensor, *,
                 use_reference: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per unit, the map values above its ``floor`` (see the module docstring). Inputs are
    converted to contiguous float32, never moved: they must be on one device (ValueError)."""
    maps, floor = _float32(maps), _float32(floor)
    if use_reference or _C is None:
        return values_above_reference(maps, floor)
    return torch.ops.ndcore.values_above(maps, floor)


def kept_cells(maps: torch.Tensor, bound: torch.Tensor, *, use_reference: bool = False
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maps with a value above their unit's ``bound`` and the cells of them within one step
    of such a value (see the module docstring). Converted and checked as ``values_above``."""
    maps, bound = _float32(maps), _float32(bound)
    if use_reference or _C is None:
        return kept_cells_reference(maps, bound)
    return torch.ops.ndcore.kept_cells(maps, bound)


def fill_cells(rows: torch.Tensor, units: torch.Tensor, positions: torch.Tensor,
               values: torch.Tensor, fill: torch.Tensor, num_images: int, h: int, w: int, *,
               use_reference: bool = False) -> torch.Tensor:
    """Dense maps [num_images, U, h, w] from the output of ``kept_cells`` and a ``fill`` [U] for
    everything else (see the module docstring). Inputs are converted (rows, units to int64,
    positions to int32, values and fill to float32), never moved."""
    rows = rows.to(torch.int64).contiguous()
    units = units.to(torch.int64).contiguous()
    positions = positions.to(torch.int32).contiguous()
    values, fill = _float32(values), _float32(fill)
    args = (rows, units, positions, values, fill, int(num_images), int(h), int(w))
    if use_reference or _C is None:
        return fill_cells_reference(*args)
    return torch.ops.ndcore.fill_cells(*args)
