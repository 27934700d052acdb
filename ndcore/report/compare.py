"""Several runs side by side: a table of detectors per layer and a chart of unique detectors;
for a series (checkpoints of a training), a chart of them against its x-axis."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NdcoreError, OutputError
from ..files import replace_atomically
from ..results import DissectionResult
from ..results.series import finite_x, is_series, read_series
from ..figures import charts
from .common import check_cutoff, check_fdr, rotation_curves


def rotation_chart_path(out: Path) -> Path:
    """Where compare puts the rotation chart, next to its main chart ``out``."""
    return out.with_name(out.stem + "-rotation.svg")


def series_chart_path(out: Path) -> Path:
    """Where compare puts the series chart (detectors against x), next to its main chart."""
    return out.with_name(out.stem + "-series.svg")


@dataclass
class RunList:
    """The run directories a comparison reads, a series expanded into its members in place,
    and their x values when there is an x-axis (``xs`` None: none; an entry None: a plain run
    given beside a series, with no x of its own)."""

    run_dirs: List[Path]
    xs: Optional[List[Optional[float]]] = None
    x_label: Optional[str] = None


def expand_runs(paths: Sequence, x: Optional[Sequence[float]] = None,
                x_label: Optional[str] = None) -> RunList:
    """``paths``: run directories and series directories (with ``series.json``), mixed. A
    series gives its finished members in order, with their x values and its x label; ``x``
    (one value per run once expanded) overrides them, and gives plain runs an x-axis too."""
    dirs: List[Path] = []
    xs: List[Optional[float]] = []
    labels: List[str] = []
    for path in map(Path, paths):
        if not is_series(path):
            dirs.append(path)
            xs.append(None)
            continue
        series = read_series(path)
        # a member still running (an interrupted series) has no result yet: the others are shown
        done = [m for m in series.members if series.complete or m.complete]
        if not done:
            raise OutputError(f"{path}: no member of the series has finished; run the same "
                              "`ndcore dissect` command again")
        if len(done) < len(series.members):
            warnings.warn(f"{path}: left out the members not finished: "
                          f"{', '.join(m.name for m in series.members if m not in done)}",
                          stacklevel=3)
        dirs += [series.directory / m.run for m in done]
        xs += [m.x for m in done]
        labels.append(series.x_label)
    if x is not None:
        if len(x) != len(dirs):
            raise NdcoreError(f"--x: {len(x)} values for {len(dirs)} runs (a series counts "
                              "its members); give one value per run, in order")
        return RunList(dirs, finite_x(x), x_label or "x")
    if not labels:
        return RunList(dirs)
    return RunList(dirs, xs, x_label or " / ".join(dict.fromkeys(labels)))


def run_names(run_dirs: Sequence[Path]) -> List[str]:
    """Short distinct names: the directory name, with parent folders added until distinct."""
    paths = [Path(d).resolve() for d in run_dirs]
    if len(set(paths)) < len(paths):  # the same directory given twice
        return [f"{p.name} ({i + 1})" for i, p in enumerate(paths)]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]).lstrip("/") for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def compare_runs(run_dirs: Sequence, out=None, *, cutoff: Optional[float] = None,
                 union: Optional[str] = None, fdr: Optional[float] = None,
                 x: Optional[Sequence[float]] = None,
                 x_label: Optional[str] = None) -> Tuple[List[Dict], Path]:
    """One row per (run, layer), and an SVG chart of unique detectors per category per layer;
    for runs with rotated layers (``LAYER@rot<alpha>``), a second chart of detectors against
    alpha (:func:`rotation_chart_path`).

    ``run_dirs`` may hold series directories (``ndcore dissect --weights A --weights B ...``):
    each stands for its members, in order (:func:`expand_runs`). With a series, or ``x`` (one
    value per run, overriding a series' own), the runs have an x-axis (named ``x_label``): each
    row carries its run's ``x`` (None for a run without one), and a third chart draws unique
    detectors per category against x, one panel per layer (:func:`series_chart_path`).

    Each run is labelled with its own saved settings unless ``cutoff`` / ``union`` / ``fdr``
    are given (give them to compare runs on equal terms). The chart goes to ``out`` (default
    ``compare.svg`` in the current directory). A row's ``detectors_fdr`` (significant
    detectors at its ``fdr``) and ``stable_labels`` are None for a layer without them.
    """
    if not run_dirs:
        raise NdcoreError("compare: give at least one run directory")
    check_cutoff(cutoff)
    check_fdr(fdr)
    runs = expand_runs(run_dirs, x, x_label)
    run_dirs = runs.run_dirs
    xs = runs.xs or [None] * len(run_dirs)
    results = [DissectionResult.load(d, union=union, cutoff=cutoff, fdr=fdr) for d in run_dirs]
    names = run_names(run_dirs)
    categories: List[str] = []
    for r in results:  # runs may cover different categories: keep every one, in first-seen order
        categories += [c for c in r.vocabulary.categories if c not in categories]

    rows, bars, groups, curves, along_x = [], [], [], [], []
    for name, result, x_value in zip(names, results, xs):
        summaries, unique = {}, {}
        for layer, lr in result.layers.items():
            s = summaries[layer] = lr.summary()
            rows.append({
                "run": name, "x": x_value, "layer": layer,
                "model": result.config.get("model", {}).get("spec"),
                "units": s["units"], "detectors": s["detectors"],
                "unique_detectors": s["unique_detectors"], "cutoff": s["cutoff"],
                "union": s["union"], "fdr": s.get("fdr"),
                "detectors_fdr": s.get("detectors_fdr"), "stable_labels": s.get("stable_labels"),
                "categories": {c: s["categories"].get(c, {"detectors": 0, "unique": 0})
                               for c in categories},
            })
            unique[layer] = {c: s["categories"].get(c, {}).get("unique", 0) for c in categories}
            bars.append((layer, unique[layer]))
        groups.append((name, len(result.layers)))
        if x_value is not None:
            along_x.append((name, x_value, unique))
        curves += [(f"{name}: {layer}" if len(results) > 1 else layer, points)
                   for layer, points in rotation_curves(summaries, categories)]

    if runs.xs is not None and len(along_x) < len(results):
        warnings.warn("left off the series chart (no x value; give --x for every run): "
                      + ", ".join(n for n, v in zip(names, xs) if v is None), stacklevel=2)
    svg = charts.stacked_bars(bars, categories, "unique detectors per category", groups=groups)
    out = Path(out) if out else Path("compare.svg")
    charts_out = [(out, svg)]
    if curves:  # runs with rotated layers: the paper's rotation figure
        charts_out.append((rotation_chart_path(out), charts.rotation_curves(curves, categories)))
    if along_x:  # runs with an x-axis: the paper's figure against training iteration
        charts_out.append((series_chart_path(out),
                           charts.series_panels(along_x, categories, runs.x_label)))
    path = out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, chart in charts_out:  # an interrupted write leaves the previous file whole
            text = charts.standalone(chart)
            replace_atomically(path, lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"),
                               durable=False)
        # a companion chart this comparison does not draw belongs to an earlier one: remove it
        # so that the charts beside ``out`` all describe the same runs
        written = {p for p, _ in charts_out}
        for path in (rotation_chart_path(out), series_chart_path(out)):
            if path not in written:
                path.unlink(missing_ok=True)
    except OSError as e:
        raise NdcoreError(f"{path}: cannot write the chart ({e.strerror or e})") from None
    return rows, out
