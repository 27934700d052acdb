"""formulas.json: merging later runs' units, also when runs on one layer write at once."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from ndcore.formulas import output
from ndcore.formulas.output import read_formulas, write_formulas


def header(**kw):
    base = {"layer": "4", "length": 3, "search": "optimal", "beam": 5,
            "categories": ["object"], "labels": 9, "images": 20, "union": "plain",
            "seconds": 1.0}
    return dict(base, **kw)


def row(unit):
    return {"unit": unit, "formula": "water", "iou": 0.5, "length": 1, "optimal": True,
            "visited": 3}


def units_in(run):
    return [r["unit"] for r in read_formulas(run, "4")["units"]]


def _write_slowly(run, units):
    """One `ndcore formulas --units ...` writer whose read-merge-write takes a while."""
    read = output.read_formulas

    def slow_read(*args):
        data = read(*args)
        time.sleep(0.3)  # widen the window between reading and writing
        return data

    output.read_formulas = slow_read  # in this child process only
    write_formulas(run, "4", header(), [row(u) for u in units])


def test_runs_writing_at_once_keep_every_unit(tmp_path):
    """Processes write the file at once, each reading it and writing it back with its units
    added: without a lock around read-merge-write, the last writer drops the others' units."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_slowly, args=(tmp_path, units))
             for units in ([0, 1], [2], [3, 4], [5])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert units_in(tmp_path) == [0, 1, 2, 3, 4, 5]
    assert read_formulas(tmp_path, "4")["header"]["units"] == 6
    assert not list((tmp_path / "4").glob("*.tmp"))


def test_beam_width_matters_only_to_the_beam_search(tmp_path):
    write_formulas(tmp_path, "4", header(beam=5), [row(0)])
    write_formulas(tmp_path, "4", header(beam=7), [row(1)])  # optimal: --beam is unused
    assert units_in(tmp_path) == [0, 1]
    write_formulas(tmp_path, "4", header(length=2, beam=7), [row(2)])  # another setting
    assert units_in(tmp_path) == [2]
    write_formulas(tmp_path, "4", header(search="beam", beam=5), [row(3)])
    write_formulas(tmp_path, "4", header(search="beam", beam=5), [row(4)])
    assert units_in(tmp_path) == [3, 4]
    write_formulas(tmp_path, "4", header(search="beam", beam=6), [row(5)])
    assert units_in(tmp_path) == [5]


def test_an_unreadable_file_is_replaced(tmp_path):
    write_formulas(tmp_path, "4", header(), [row(0)])
    output.formulas_path(tmp_path, "4").write_text("{not json")
    write_formulas(tmp_path, "4", header(), [row(1)])
    assert units_in(tmp_path) == [1]


@pytest.mark.parametrize("search", ["optimal", "beam"])
def test_header_units_count_the_file(tmp_path, search):
    write_formulas(tmp_path, "4", header(search=search), [row(0), row(2)])
    write_formulas(tmp_path, "4", header(search=search, seconds=2.0), [row(1)])
    data = read_formulas(tmp_path, "4")
    assert data["header"]["units"] == 3 and data["header"]["seconds"] == 2.0
