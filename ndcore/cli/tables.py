"""Rich tables of a dissection result (shared by dissect, summary and demo)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from .console import console


def print_summary(result, top: int = 2) -> None:
    cats = result.vocabulary.categories
    overall = Table(title="Interpretability per layer", box=box.SIMPLE_HEAD)
    per_cat = Table(title="Detectors / unique detectors per category", box=box.SIMPLE_HEAD)
    for col in ("layer", "units", "detectors", "unique detectors"):
        overall.add_column(col, justify="left" if col == "layer" else "right")
    per_cat.add_column("layer")
    for cat in cats:
        per_cat.add_column(cat, justify="right", min_width=len(cat), no_wrap=True)
    for name, lr in result.layers.items():
        s = lr.summary()
        overall.add_row(name, str(s["units"]), str(s["detectors"]), str(s["unique_detectors"]))
        per_cat.add_row(name, *[f"{s['categories'][c]['detectors']}/{s['categories'][c]['unique']}"
                                for c in cats])
    console.print(overall)
    console.print(per_cat)
    for name, lr in result.layers.items():
        t = Table(title=f"{name}: best units per category (IoU > {lr.cutoff:g} is a detector)")
        for col in ("category", "unit", "label", "IoU"):
            t.add_column(col)
        for cat in cats:
            best = sorted((u for u in lr.units if u.category == cat), key=lambda u: -u.iou)[:top]
            for u in best:
                style = "" if u.iou > lr.cutoff else "dim"
                t.add_row(cat, str(u.unit), u.label, f"{u.iou:.3f}", style=style)
        console.print(t)
    console.print("[dim]Units are numbered from 0, as in the report and summary.json; "
                  "tally.csv numbers them from 1, as NetDissect does.[/dim]")
