"""The selection ops (values_above, kept_cells, fill_cells): the compiled CPU kernels against
independent definitions written from their documented semantics, on adversarial inputs; every
runner rejects the same bad input with the same message; their fakes pass opcheck."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from ndcore.ops import (fill_cells, fill_cells_reference, kept_cells, kept_cells_reference,
                        values_above, values_above_reference)
from op_harness import (CPU_KEYS, LOADED, SAME_DEVICE, assign, cuda, expect_rejection,
                        needs_ext, needs_gpu, to_device)

INF, NAN = math.inf, math.nan


def by_loops_values_above(maps, floor):
    """values_above by its definition, one value at a time: per unit its values above the floor,
    padded with -inf to the longest."""
    b, u, h, w = maps.shape
    rows = [[float(maps[r, unit, y, x]) for r in range(b) for y in range(h) for x in range(w)
             if float(maps[r, unit, y, x]) > float(floor[unit])] for unit in range(u)]
    most = max((len(r) for r in rows), default=0)
    return [r + [-INF] * (most - len(r)) for r in rows], [len(r) for r in rows]


def by_loops_kept_cells(maps, bound):
    """kept_cells by its definition: maps with a value above the bound, in (row, unit) order,
    and their cells within one step (Chebyshev distance <= 1) of such a value."""
    b, u, h, w = maps.shape
    rows, units, positions, values = [], [], [], []
    for r in range(b):
        for unit in range(u):
            above = {(y, x) for y in range(h) for x in range(w)
                     if float(maps[r, unit, y, x]) > float(bound[unit])}
            if not above:
                continue
            k = len(rows)
            rows.append(r)
            units.append(unit)
            for y in range(h):
                for x in range(w):
                    if any((y + dy, x + dx) in above for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
                        positions.append(k * h * w + y * w + x)
                        values.append(float(maps[r, unit, y, x]))
    return rows, units, positions, values


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.view(torch.int32) if a.dtype == torch.float32 else a,
        b.view(torch.int32) if b.dtype == torch.float32 else b)


def runners():
    out = [("reference", True)]
    if LOADED:
        out.append(("compiled", False))
    return out


def adversarial_maps(seed: int, shape=(3, 4, 6, 5)):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(shape, generator=g).round(decimals=1)  # many ties
    floor = torch.randn(shape[1], generator=g).round(decimals=1)
    flat = maps.view(-1)
    if flat.numel() > 8:
        flat[0], flat[1], flat[2] = -0.0, 0.0, NAN  # signed zeros, NaN (above nothing)
        maps[0, 0].fill_(float(floor[0]))  # a map exactly at its floor: kept nowhere
        maps[-1, -1, 0, 0] = 50.0  # a corner value far above
        maps[-1, -1, -1, -1] = 50.0  # and the opposite corner
    return maps, floor


FLOORS = {
    "random": lambda f: f,
    "zero": lambda f: torch.zeros_like(f),
    "minus-zero": lambda f: torch.full_like(f, -0.0),
    "-inf": lambda f: torch.full_like(f, -INF),
    "+inf": lambda f: torch.full_like(f, INF),
    "nan": lambda f: torch.full_like(f, NAN),
    "mixed": lambda f: torch.tensor([-INF, INF, NAN, 0.3] * f.numel())[: f.numel()],
}
SHAPES = [(3, 4, 6, 5), (1, 1, 1, 1), (2, 3, 1, 7), (2, 3, 7, 1), (5, 2, 2, 2), (0, 3, 4, 4),
          (3, 0, 4, 4), (2, 3, 0, 5), (1, 70, 3, 3),
          # rows of exactly one 64-bit word, one more, and three words with a partial last one
          (1, 2, 3, 64), (1, 2, 3, 65), (1, 2, 2, 130)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("floor_kind", list(FLOORS))
def test_values_above_is_its_definition(shape, floor_kind) -> None:
    maps, floor = adversarial_maps(1, shape)
    floor = FLOORS[floor_kind](floor)
    want_values, want_counts = by_loops_values_above(maps, floor)
    for name, reference in runners():
        values, counts = values_above(maps, floor, use_reference=reference)
        assert counts.dtype == torch.int64 and counts.tolist() == want_counts, name
        # bit for bit: -0.0 stays -0.0
        most = len(want_values[0]) if want_values else 0
        want = torch.tensor(want_values, dtype=torch.float32).reshape(shape[1], most)
        assert same_bits(values, want), name


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("floor_kind", list(FLOORS))
def test_kept_cells_is_its_definition(shape, floor_kind) -> None:
    maps, bound = adversarial_maps(2, shape)
    bound = FLOORS[floor_kind](bound)
    want = by_loops_kept_cells(maps, bound)
    for name, reference in runners():
        rows, units, positions, values = kept_cells(maps, bound, use_reference=reference)
        assert (rows.dtype, units.dtype, positions.dtype) == (torch.int64, torch.int64,
                                                              torch.int32), name
        assert rows.tolist() == want[0] and units.tolist() == want[1], name
        assert positions.tolist() == want[2], name
        assert same_bits(values, torch.tensor(want[3], dtype=torch.float32)), name


def test_kept_cells_premises_and_borders() -> None:
    """Values above at the corners and edges of maps, isolated and in blobs; half the maps
    kept; every position ascending."""
    maps = torch.zeros(4, 3, 6, 7)
    maps[0, 0, 0, 0] = maps[0, 0, 5, 6] = 1.0  # opposite corners
    maps[1, 2, 2:4, 3:5] = 1.0  # a blob
    maps[2, 1, :, 0] = 1.0  # a whole border column
    maps[3, 1] = 1.0  # a whole map
    bound = torch.full((3,), 0.5)
    rows, units, positions, _ = kept_cells(maps, bound)
    assert list(zip(rows.tolist(), units.tolist())) == [(0, 0), (1, 2), (2, 1), (3, 1)]
    assert bool((positions[1:] > positions[:-1]).all())
    want = by_loops_kept_cells(maps, bound)
    assert positions.tolist() == want[2]
    per_map = torch.bincount(positions.long() // 42, minlength=4).tolist()
    assert per_map == [8, 16, 12, 42]  # 2 corners x 4, blob 4x4, column 6x2, all


def test_fill_cells_inverts_kept_cells() -> None:
    """fill_cells(kept_cells(maps)) is maps on the kept cells and the fill elsewhere."""
    maps, bound = adversarial_maps(3, (4, 5, 7, 6))
    maps, bound = maps.nan_to_num(0.0), bound.abs() + 1.2
    fill = torch.arange(5, dtype=torch.float32) - 100.0
    kept = kept_cells(maps, bound)
    assert 0 < kept[0].numel() < 20 and 0 < kept[2].numel() < maps.numel() // 2  # premises
    cell = torch.zeros(maps.numel(), dtype=torch.bool)
    key = kept[0] * 5 + kept[1]
    cell.view(-1, 42)[key[kept[2].long() // 42], kept[2].long() % 42] = True
    cell = cell.view_as(maps)
    want = torch.where(cell, maps, fill[None, :, None, None].expand_as(maps))
    for name, reference in runners():
        got = fill_cells(*kept, fill, 4, 7, 6, use_reference=reference)
        assert same_bits(got, want), name


def test_fill_cells_with_nothing_kept_and_empty_batches() -> None:
    fill = torch.tensor([1.0, -2.0])
    none = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.int32), torch.zeros(0))
    for name, reference in runners():
        got = fill_cells(*none, fill, 3, 2, 2, use_reference=reference)
        assert torch.equal(got, fill[None, :, None, None].expand(3, 2, 2, 2)), name
        assert fill_cells(*none, fill, 0, 2, 2, use_reference=reference).shape == (0, 2, 2, 2)


@needs_ext
def test_thread_count_does_not_change_results() -> None:
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(16, 40, 9, 9, generator=g)
    floor = torch.full((40,), 1.5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (values_above(maps, floor), kept_cells(maps, floor))
        torch.set_num_threads(max(threads, 2))
        many = (values_above(maps, floor), kept_cells(maps, floor))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip([*one[0], *one[1]], [*many[0], *many[1]]):
        assert torch.equal(a, b)


@needs_ext
def test_wrapper_converts_and_makes_contiguous() -> None:
    maps, floor = adversarial_maps(5)
    odd = maps.double().transpose(2, 3).contiguous().transpose(2, 3)  # same values, strided
    assert not odd.is_contiguous()
    for a, b in zip(values_above(odd, floor.double()), values_above(maps, floor)):
        assert torch.equal(a, b)
    kept = kept_cells(odd, floor.half())
    assert all(torch.equal(a, b) for a, b in zip(kept, kept_cells(maps, floor.half().float())))


@needs_ext
@pytest.mark.parametrize("op", ["values_above", "kept_cells", "fill_cells"])
def test_opcheck_cpu(op: str) -> None:
    maps, floor = adversarial_maps(6)
    maps = maps.nan_to_num(0.0)
    args = (maps, floor)
    if op == "fill_cells":
        args = (*kept_cells(maps, floor), floor - 9, 3, 6, 5)
    torch.library.opcheck(getattr(torch.ops.ndcore, op).default, args)


# ---------------------------------------------------------------------------- validation

V, K, FC = "ndcore::values_above: ", "ndcore::kept_cells: ", "ndcore::fill_cells: "


def select_args() -> list:
    return [torch.zeros(2, 3, 4, 5), torch.zeros(3)]


def fill_args() -> list:
    maps = torch.zeros(2, 3, 4, 5)
    maps[0, 1, 1, 1] = maps[1, 2, 3, 4] = 1.0
    return [*kept_cells(maps, torch.full((3,), 0.5)), torch.zeros(3), 2, 4, 5]


def swap(i: int, j: int):
    def edit(a: list) -> None:
        a[i] = a[i].clone()
        a[i][0], a[i][1] = a[i][1].clone(), a[i][0].clone()
        if j >= 0:
            a[j] = a[j].clone()
            a[j][0], a[j][1] = a[j][1].clone(), a[j][0].clone()
    return edit


def set_at(index: int, pos: int, value):
    def edit(a: list) -> None:
        a[index] = a[index].clone()
        a[index][pos] = value
    return edit


HUGE = torch.zeros(1).expand(1, 1, 2**16, 2**15 + 1)  # 2^31 + 2^16 values, none allocated
SELECT_CASES = [
    ("maps 3-d", assign(0, lambda a: a[0][0]), "maps must be [B, U, h, w], got shape [3, 4, 5]"),
    ("floor of 2", assign(1, lambda a: a[1][:2]), "{f} must have shape [3], got shape [2]"),
    ("floor 2-d", assign(1, lambda a: a[1][None]), "{f} must have shape [3], got shape [1, 3]"),
    ("float64 maps", assign(0, lambda a: a[0].double()), "maps must be float32, got float64"),
    ("int floor", assign(1, lambda a: a[1].int()), "{f} must be float32, got int32"),
    ("floor on meta", to_device(1, "meta"), "{f} is on meta but maps is on cpu" + SAME_DEVICE),
    ("maps on meta", to_device(0, "meta"), "{f} is on cpu but maps is on meta" + SAME_DEVICE),
]
FILL_CASES = [
    ("row out of range", set_at(0, 1, 2), "rows must lie in [0, 2)"),
    ("negative unit", set_at(1, 0, -1), "units must lie in [0, 3)"),
    ("maps out of order", swap(0, 1), "kept maps must be distinct and in (row, unit) order"),
    ("a map twice", lambda a: a.__setitem__(0, torch.tensor([0, 0])) or a.__setitem__(
        1, torch.tensor([1, 1])),
     "kept maps must be distinct and in (row, unit) order"),
    ("positions unsorted", swap(2, 3), "positions must be strictly increasing"),
    ("a position twice", lambda a: a.__setitem__(2, torch.cat([a[2][:1], a[2][:-1]])),
     "positions must be strictly increasing"),
    ("position past the kept maps", set_at(2, -1, 40), "positions must lie in [0, 40), got [0, 40]"),
    ("negative position", set_at(2, 0, -1), "positions must lie in [0, 40), got [-1, 39]"),
    ("more kept maps than maps", assign(5, 0), "2 kept maps but only 0 x 3 maps"),
    ("negative h", assign(6, -1), "num_images, h and w must be >= 0, got 2, -1, 5"),
    ("rows and units", assign(1, lambda a: a[1][:1]),
     "rows and units must be 1-d and of one length, got shapes [2] and [1]"),
    ("positions and values", assign(3, lambda a: a[3][:-1]),
     "positions and values must be 1-d and of one length, got shapes [13] and [12]"),
    ("fill 2-d", assign(4, lambda a: a[4][None]), "fill must be [U], got shape [1, 3]"),
    ("int32 rows", assign(0, lambda a: a[0].int()), "rows and units must be int64, got int32 and "
     "int64"),
    ("int64 positions", assign(2, lambda a: a[2].long()), "positions must be int32, got int64"),
    ("float64 fill", assign(4, lambda a: a[4].double()),
     "values and fill must be float32, got float32 and float64"),
    ("cells past int32", lambda a: a.__setitem__(6, 2**15) or a.__setitem__(7, 2**15),
     "2 kept maps of 32768x32768 have more cells than int32 positions number"),
    ("fill on meta", to_device(4, "meta"), "fill is on meta but rows is on cpu" + SAME_DEVICE),
]


def _select_runners(op: str):
    compiled = getattr(torch.ops.ndcore, op)
    reference = {"values_above": values_above_reference, "kept_cells": kept_cells_reference,
                 "fill_cells": fill_cells_reference}[op]
    out = {"reference": reference}
    if LOADED:
        out["cpu-kernel"] = lambda *a: compiled.default.redispatch(CPU_KEYS, *a)
        out["dispatcher"] = lambda *a: compiled(*a)
    return out


@pytest.mark.parametrize("op", ["values_above", "kept_cells"])
@pytest.mark.parametrize("edit,message", [c[1:] for c in SELECT_CASES],
                         ids=[c[0] for c in SELECT_CASES])
def test_select_bad_inputs_rejected_alike(op: str, edit: Callable, message: str) -> None:
    prefix, name = (V, "floor") if op == "values_above" else (K, "bound")
    for runner_name, runner in _select_runners(op).items():
        if "on meta" in message and runner_name == "cpu-kernel":
            continue  # the dispatcher sends these to the fake, a direct CPU call cannot be made
        args = select_args()
        edit(args)
        expect_rejection(runner, args, prefix + message.format(f=name))


def test_kept_cells_refuses_positions_past_int32() -> None:
    message = (K + f"maps has {HUGE.numel()} values but kept cells are numbered with int32 (at "
               "most 2147483647); use smaller batches")
    for runner in _select_runners("kept_cells").values():
        expect_rejection(runner, [HUGE, torch.zeros(1)], message)
    values_above_reference(HUGE[..., :2], torch.zeros(1))  # the limit is kept_cells' alone


@pytest.mark.parametrize("edit,message", [c[1:] for c in FILL_CASES],
                         ids=[c[0] for c in FILL_CASES])
def test_fill_cells_bad_inputs_rejected_alike(edit: Callable, message: str) -> None:
    for runner in _select_runners("fill_cells").values():
        args = fill_args()
        edit(args)
        expect_rejection(runner, args, FC + message)


def test_valid_cases_accepted() -> None:
    positions = fill_args()[2].tolist()  # premises: the cases above edit these
    assert positions[0] == 0 and positions[-1] == 39 and len(positions) == 13
    for op, args in [("values_above", select_args()), ("kept_cells", select_args()),
                     ("fill_cells", fill_args())]:
        for runner in _select_runners(op).values():
            runner(*args)


# ---------------------------------------------------------------------------- CUDA


@cuda
@needs_gpu
@needs_ext
def test_cuda_runs_the_reference_and_rejects_alike() -> None:
    maps, floor = adversarial_maps(7, (4, 6, 9, 8))
    got = [t.cpu() for t in values_above(maps.cuda(), floor.cuda())]
    assert all(same_bits(a, b) for a, b in zip(got, values_above(maps, floor)))
    kept = kept_cells(maps.cuda(), floor.cuda())
    assert all(same_bits(a.cpu(), b) for a, b in zip(kept, kept_cells(maps, floor)))
    dense = fill_cells(*kept, floor.cuda() - 9, 4, 9, 8)
    assert same_bits(dense.cpu(), fill_cells(*kept_cells(maps, floor), floor - 9, 4, 9, 8))
    args = fill_args()
    args[0] = torch.tensor([1, 0])
    for runner in (torch.ops.ndcore.fill_cells, fill_cells_reference):
        expect_rejection(runner, [a.cuda() if isinstance(a, torch.Tensor) else a for a in args],
                         FC + "kept maps must be distinct and in (row, unit) order")
    expect_rejection(torch.ops.ndcore.values_above, [maps.cuda(), floor],
                     V + "floor is on cpu but maps is on cuda:0" + SAME_DEVICE)
