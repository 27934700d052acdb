"""`ndcore compare` of a checkpoint series: a series directory expands to its members in order,
the runs get an x-axis (the summary's x values, or --x), and the series chart draws unique
detectors per category against x, one panel per layer.

The runs are real: the demo CNN at four "checkpoints" (its random initialisation blended
towards its trained weights) dissected on the synthetic probe set; the oracle of the chart's
points is each run's tally.csv (unique concepts per category among the units whose IoU is over
the cut-off), not the code that draws it."""

import csv
import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from ndcore.api import run_dissection
from ndcore.cli import main
from ndcore.cli.console import console
from ndcore.demo.model import WEIGHTS_PATH, DemoNet
from ndcore.errors import NdcoreError
from ndcore.figures.charts import CATEGORY_COLORS, evenly_spaced
from ndcore.report.compare import compare_runs, expand_runs, series_chart_path
from ndcore.results.series import Series, SeriesMember, series_x

SVG = "{http://www.w3.org/2000/svg}"
ITERATIONS = (0, 9, 80, 1000)  # a log-ish spread; as names, 'iter_1000' sorts before 'iter_80'
LAYERS = {0: ["conv2", "conv5"], 9: ["conv5"], 80: ["conv2", "conv5"], 1000: ["conv2", "conv5"]}


def dissect(weights: Path, layers, out: Path) -> Path:
    run_dissection("demo", layers, "synthetic:40", out, weights=str(weights), batch_size=20,
                   workers=0)
    return out


def blend(trained, start, a: float, path: Path) -> Path:
    torch.save({k: a * v + (1 - a) * start[k] if v.is_floating_point() else v
                for k, v in trained.items()}, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(series directory, a plain run beside it)."""
    base = tmp_path_factory.mktemp("series")
    trained = torch.load(WEIGHTS_PATH, map_location="cpu")
    torch.manual_seed(0)
    start = DemoNet().state_dict()
    series = base / "ckpts"
    weights = [blend(trained, start, a, base / f"iter_{it}.pt")
               for it, a in zip(ITERATIONS, (0.0, 0.3, 0.7, 1.0))]
    xs, label = series_x([str(w) for w in weights])
    assert (xs, label) == ([float(i) for i in ITERATIONS], "iteration")  # the premise
    members = []
    for w, x in zip(weights, xs):
        dissect(w, LAYERS[int(x)], series / w.stem)
        members.append(SeriesMember(w.stem, "demo", str(w), LAYERS[int(x)], x, complete=True))
    Series(series, members, label, complete=True).write()
    plain = dissect(blend(trained, start, 0.5, base / "half.pt"), ["conv5"], base / "half")
    return series, plain


def unique_per_category(run: Path, layer: str) -> dict:
    """Unique concepts per category among the detectors, from tally.csv and config.json."""
    cutoff = json.loads((run / "config.json").read_text())["options"]["cutoff"]
    found = {}
    with open(run / layer / "tally.csv", newline="") as f:
        for row in csv.DictReader(f):
            score = float(row["score"])
            assert abs(score - cutoff) > 1e-6  # tally.csv rounds: no score on the edge
            if score > cutoff:
                found.setdefault(row["category"], set()).add(row["label"])
    return {c: len(labels) for c, labels in found.items()}


def panels(svg: Path) -> dict:
    """{layer: panel <g>} of the series chart."""
    root = ET.parse(svg).getroot()
    return {g.get("data-layer"): g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"}


def y_to_value(panel):
    """The panel's y scale, read from its axis labels (value at each gridline's height)."""
    ticks = [(float(t.get("y")) - 4, float(t.text)) for t in panel.iter(f"{SVG}text")
             if t.get("text-anchor") == "end"]
    (y0, v0), (y1, v1) = max(ticks), min(ticks)  # the bottom (0) and the top gridline
    return lambda y: v0 + (y0 - y) * (v1 - v0) / (y0 - y1)


def test_a_series_expands_in_place_in_its_order(runs):
    series, plain = runs
    expanded = expand_runs([plain, series])
    summary = json.loads((series / "series.json").read_text())
    assert expanded.run_dirs == [plain] + [series / m["name"] for m in summary["members"]]
    assert [d.name for d in expanded.run_dirs[1:]] == [f"iter_{i}" for i in ITERATIONS]
    assert sorted(d.name for d in expanded.run_dirs[1:]) != [f"iter_{i}" for i in ITERATIONS]
    assert expanded.xs == [None] + [m["x"] for m in summary["members"]]
    assert expanded.x_label == "iteration"
    assert expand_runs([plain]).xs is None  # plain runs alone: no x-axis
    given = expand_runs([series, plain], x=[5, 6, 7, 8, 9], x_label="epoch")
    assert (given.xs, given.x_label) == ([5.0, 6.0, 7.0, 8.0, 9.0], "epoch")
    with pytest.raises(NdcoreError, match=r"^--x: 3 values for 4 runs"):
        expand_runs([series], x=[1, 2, 3])


def test_rows_carry_x_and_the_members_counts(runs, tmp_path):
    series, _ = runs
    rows, out = compare_runs([series], out=tmp_path / "c.svg")
    expected = [(f"iter_{i}", float(i), layer) for i in ITERATIONS for layer in LAYERS[i]]
    assert [(r["run"], r["x"], r["layer"]) for r in rows] == expected
    for r in rows:
        oracle = unique_per_category(series / r["run"], r["layer"])
        assert {c: v["unique"] for c, v in r["categories"].items() if v["unique"]} == oracle
    # the side-by-side chart groups its bars by member
    texts = [t.text for t in ET.parse(out).getroot().iter(f"{SVG}text")]
    assert all(f"iter_{i}" in texts for i in ITERATIONS)
    assert series_chart_path(out) == tmp_path / "c-series.svg"


def test_series_chart_points_are_the_unique_detectors(runs, tmp_path):
    series, _ = runs
    rows, out = compare_runs([series], out=tmp_path / "c.svg")
    categories = list(rows[0]["categories"])
    chart = panels(series_chart_path(out))
    assert list(chart) == ["conv2", "conv5"]
    assert evenly_spaced([float(i) for i in ITERATIONS])  # the premise of the spacing checks
    for layer, panel in chart.items():
        members = [i for i in ITERATIONS if layer in LAYERS[i]]
        lines = list(panel.iter(f"{SVG}polyline"))
        points = list(panel.iter(f"{SVG}circle"))
        assert len(lines) == len(categories)
        assert len(points) == len(categories) * len(members)
        value = y_to_value(panel)
        seen = set()
        for p in points:
            m = re.fullmatch(r"iter_(\d+) \(iteration (\d+)\), (\w+): (\d+) unique (\w+) "
                             r"detectors", p.find(f"{SVG}title").text)
            it, x, lay, n, cat = m.groups()
            assert (it, lay) == (x, layer) and int(it) in members
            oracle = unique_per_category(series / f"iter_{it}", layer).get(cat, 0)
            assert int(n) == oracle
            assert value(float(p.get("cy"))) == pytest.approx(oracle, abs=0.05)
            assert p.get("fill") == CATEGORY_COLORS[cat]
            seen.add((int(it), cat))
        assert seen == {(i, c) for i in members for c in categories}
        for line in lines:  # members left to right, evenly spaced: 0, 9, 80, 1000
            xy = [tuple(map(float, pt.split(","))) for pt in line.get("points").split()]
            assert len(xy) == len(members)
            xs = [x for x, _ in xy]
            assert xs == sorted(xs)
        texts = [t.text for t in panel.iter(f"{SVG}text")]
        assert "iteration (evenly spaced, not to scale)" in texts
        assert {"0", "9", "80", "1k"} <= set(texts)
    conv5 = [float(c.get("cx")) for c in chart["conv5"].iter(f"{SVG}circle")][:4]
    gaps = [b - a for a, b in zip(conv5, conv5[1:])]
    assert max(gaps) - min(gaps) < 0.2 and min(gaps) > 0  # evenly spaced


def test_x_given_overrides_the_series_and_draws_to_scale(runs, tmp_path):
    series, plain = runs
    rows, out = compare_runs([series], out=tmp_path / "c.svg", x=[0, 100, 300, 400],
                             x_label="epoch")
    assert [r["x"] for r in rows if r["layer"] == "conv5"] == [0, 100, 300, 400]
    panel = panels(series_chart_path(out))["conv5"]
    cx = [float(c.get("cx")) for c in panel.iter(f"{SVG}circle")][:4]
    assert (cx[2] - cx[0]) / (cx[3] - cx[0]) == pytest.approx(0.75, abs=0.01)  # to scale
    assert "epoch" in [t.text for t in panel.iter(f"{SVG}text")]
    # plain runs get an x-axis from --x alone
    rows, out = compare_runs([plain, plain], out=tmp_path / "p.svg", x=[1, 2])
    assert [r["x"] for r in rows] == [1.0, 2.0] and series_chart_path(out).is_file()
    # the same chart path compared again without an x-axis: the series chart goes with it
    compare_runs([plain, plain], out=out)
    assert out.is_file() and not series_chart_path(out).exists()
    with pytest.raises(NdcoreError, match="--x: 4 values for 5 runs"):
        compare_runs([plain, series], out=tmp_path / "q.svg", x=[1, 2, 3, 4])


def test_a_plain_run_beside_a_series_is_left_off_the_chart(runs, tmp_path):
    series, plain = runs
    with pytest.warns(UserWarning, match="left off the series chart .*: half"):
        rows, out = compare_runs([plain, series], out=tmp_path / "c.svg")
    assert rows[0]["run"] == "half" and rows[0]["x"] is None
    chart = series_chart_path(out).read_text()
    assert "half" not in chart and "iter_9 (iteration 9)" in chart


def test_unfinished_members_are_left_out(runs, tmp_path):
    series, _ = runs
    partial = tmp_path / "partial"
    partial.mkdir()
    members = []
    for i in ITERATIONS:
        (partial / f"iter_{i}").symlink_to(series / f"iter_{i}")
        members.append(SeriesMember(f"iter_{i}", "demo", None, LAYERS[i], float(i),
                                    complete=i != 80))
    Series(partial, members, "iteration", complete=False).write()
    with pytest.warns(UserWarning, match="not finished: iter_80$"):
        expanded = expand_runs([partial])
    assert [d.name for d in expanded.run_dirs] == ["iter_0", "iter_9", "iter_1000"]
    for m in members:
        m.complete = False
    Series(partial, members, "iteration", complete=False).write()
    with pytest.raises(NdcoreError, match="no member of the series has finished"):
        expand_runs([partial])


def one_line_error(capsys, argv, message):
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert message in out and len(out.strip().splitlines()) == 1, out


def test_command(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "_width", 200)  # the table as a wide terminal prints it
    series, plain = runs
    out = tmp_path / "cmp.svg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["compare", str(series), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "series chart written to" in printed and (tmp_path / "cmp-series.svg").is_file()
    header = next(line for line in printed.splitlines() if "layer" in line and "run" in line)
    assert re.search(r"run\s+┃\s+x\s+┃\s+layer", header), header
    row = next(line for line in printed.splitlines() if "iter_1000" in line and "conv5" in line)
    assert re.search(r"iter_1000\s+│\s+1000\s+│\s+conv5", row), row
    assert main(["compare", str(plain), "--out", str(tmp_path / "p.svg")]) == 0
    printed = capsys.readouterr().out
    assert "series chart" not in printed and not (tmp_path / "p-series.svg").exists()
    one_line_error(capsys, ["compare", str(series), "--x", "1,2,3"], "--x: 3 values for 4 runs")
    one_line_error(capsys, ["compare", str(series), "--x", "0,a"], "--x '0,a': expected numbers")
    one_line_error(capsys, ["compare", str(series), "--x", "0,1,2,nan"],
                   "x values must be finite")


def test_readme_commands_name_options_that_exist():
    """The README's series subsection: its `ndcore compare` lines use the command's options."""
    import argparse

    from ndcore.cli.report import register

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Comparing a checkpoint series", 1)[1].split("\n#", 1)[0]
    commands = re.findall(r"^ndcore compare .*$", section, re.M)
    assert len(commands) == 2
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for line in commands:
        args = parser.parse_args(line.split("#")[0].split()[1:])
        assert args.command == "compare" and args.runs
