"""Several runs side by side: a table of detectors per layer and a chart of unique detectors."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NdcoreError
from ..results import DissectionResult
from ..figures import charts
from .common import check_cutoff, check_fdr, rotation_curves


def rotation_chart_path(out: Path) -> Path:
    """Where compare puts the rotation chart, next to its main chart ``out``."""
    return out.with_name(out.stem + "-rotation.svg")


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
                 union: Optional[str] = None,
                 fdr: Optional[float] = None) -> Tuple[List[Dict], Path]:
    """One row per (run, layer), and an SVG chart of unique detectors per category per layer;
    for runs with rotated layers (``LAYER@rot<alpha>``), a second chart of detectors against
    alpha (:func:`rotation_chart_path`).

    Each run is labelled with its own saved settings unless ``cutoff`` / ``union`` / ``fdr``
    are given (give them to compare runs on equal terms). The chart goes to ``out`` (default
    ``compare.svg`` in the current directory). A row's ``detectors_fdr`` (significant
    detectors at its ``fdr``) and ``stable_labels`` are None for a layer without them.
    """
    if not run_dirs:
        raise NdcoreError("compare: give at least one run directory")
    check_cutoff(cutoff)
    check_fdr(fdr)
    results = [DissectionResult.load(d, union=union, cutoff=cutoff, fdr=fdr) for d in run_dirs]
    names = run_names(run_dirs)
    categories: List[str] = []
    for r in results:  # runs may cover different categories: keep every one, in first-seen order
        categories += [c for c in r.vocabulary.categories if c not in categories]

    rows, bars, groups, curves = [], [], [], []
    for name, result in zip(names, results):
        summaries = {}
        for layer, lr in result.layers.items():
            s = summaries[layer] = lr.summary()
            rows.append({
                "run": name, "layer": layer, "model": result.config.get("model", {}).get("spec"),
                "units": s["units"], "detectors": s["detectors"],
                "unique_detectors": s["unique_detectors"], "cutoff": s["cutoff"],
                "union": s["union"], "fdr": s.get("fdr"),
                "detectors_fdr": s.get("detectors_fdr"), "stable_labels": s.get("stable_labels"),
                "categories": {c: s["categories"].get(c, {"detectors": 0, "unique": 0})
                               for c in categories},
            })
            bars.append((layer, {c: s["categories"].get(c, {}).get("unique", 0)
                                 for c in categories}))
        groups.append((name, len(result.layers)))
        curves += [(f"{name}: {layer}" if len(results) > 1 else layer, points)
                   for layer, points in rotation_curves(summaries, categories)]

    svg = charts.stacked_bars(bars, categories, "unique detectors per category", groups=groups)
    out = Path(out) if out else Path("compare.svg")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(charts.standalone(svg), encoding="utf-8")
        if curves:  # runs with rotated layers: the paper's rotation figure
            rotation_chart_path(out).write_text(
                charts.standalone(charts.rotation_curves(curves, categories)), encoding="utf-8")
    except OSError as e:
        raise NdcoreError(f"{out}: cannot write the chart ({e.strerror or e})") from None
    return rows, out
