"""Rich tables of a dissection result (shared by dissect, summary and demo)."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from rich import box
from rich.markup import escape
from rich.table import Table

from ..conventions import STABLE_LABEL
from .console import console


def percent(q: float) -> str:
    """0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{100 * q:g}%"


def fdr_header(fdrs: Iterable[Optional[float]]) -> str:
    """The significant detectors' column: 'detectors (FDR 5%)', naming the rate when all the
    rows share one."""
    rates = {q for q in fdrs if q is not None}
    return f"detectors (FDR {percent(rates.pop())})" if len(rates) == 1 else "detectors (FDR)"


def dash(value) -> str:
    """A statistic the layer does not have reads '-', never 0."""
    return "-" if value is None else str(value)


def statistics_headers(fdrs: Iterable[Optional[float]]) -> Dict[str, str]:
    """The chance and confidence columns' headers, by summary key."""
    return {"detectors_fdr": fdr_header(fdrs), "stable_labels": "stable"}


def statistics_columns(summaries: List[Dict]) -> List[str]:
    """The summary keys of chance and confidence that any of ``summaries`` has: a run without
    them prints the table it always did."""
    return [k for k in ("detectors_fdr", "stable_labels") if any(k in s for s in summaries)]


def print_summary(result, top: int = 2) -> None:
    cats = result.vocabulary.categories
    summaries = {name: lr.summary() for name, lr in result.layers.items()}
    extra = statistics_columns(list(summaries.values()))
    headers = statistics_headers(s.get("fdr") for s in summaries.values())
    overall = Table(title="Interpretability per layer", box=box.SIMPLE_HEAD)
    per_cat = Table(title="Detectors / unique detectors per category", box=box.SIMPLE_HEAD)
    for col in ("layer", "units", "detectors", *[headers[k] for k in extra], "unique detectors"):
        overall.add_column(col, justify="left" if col == "layer" else "right")
    per_cat.add_column("layer")
    for cat in cats:
        per_cat.add_column(cat, justify="right", min_width=len(cat), no_wrap=True)
    for name, s in summaries.items():
        overall.add_row(name, str(s["units"]), str(s["detectors"]),
                        *[dash(s.get(k)) for k in extra], str(s["unique_detectors"]))
        per_cat.add_row(name, *[f"{s['categories'][c]['detectors']}/{s['categories'][c]['unique']}"
                                for c in cats])
    console.print(overall)
    if extra:
        console.print(statistics_note(summaries.values()), highlight=False)
    for note in layer_notes(result):
        console.print(f"[dim]note: {escape(note)}[/dim]", highlight=False)
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


def statistics_note(summaries: Iterable[Dict]) -> str:
    """What the chance and confidence columns count (one dim line)."""
    summaries = list(summaries)
    perms = max((s.get("null_permutations", 0) for s in summaries), default=0)
    boot = max((s.get("bootstrap", 0) for s in summaries), default=0)
    parts = []
    if any("detectors_fdr" in s for s in summaries):
        parts.append(f"detectors (FDR): units whose label beats chance ({perms} permutations), "
                     "Benjamini-Hochberg across the layer's units")
    if any("stable_labels" in s for s in summaries):
        parts.append(f"stable: detectors keeping their label in >= "
                     f"{percent(STABLE_LABEL)} of {boot} bootstrap resamples")
    return f"[dim]{'; '.join(parts)}.[/dim]"


def layer_notes(result) -> List[str]:
    """Why a statistic the run has could not be computed for this view (once per reason)."""
    notes: List[str] = []
    for lr in result.layers.values():
        note = lr.significance.note if lr.significance is not None else None
        if note and note not in notes:
            notes.append(note)
    return notes


def print_series(series) -> None:
    """A series' members side by side: per member and layer, units, detectors and unique
    detectors (``ndcore compare DIR`` draws them against the x-axis)."""
    pairs = list(series)
    summaries = [(member, name, lr.summary()) for member, result in pairs
                 for name, lr in result.layers.items()]
    extra = statistics_columns([s for _, _, s in summaries])
    headers = statistics_headers(s.get("fdr") for _, _, s in summaries)
    table = Table(title=f"Series: {len(pairs)} models, one pass over the probe data",
                  box=box.SIMPLE_HEAD)
    widths = {"member": max(len(m.name) for m, _ in pairs),
              "layer": max((len(name) for _, name, _ in summaries), default=5)}
    for col in ("member", series.series.x_label, "layer", "units", "detectors",
                *[headers[k] for k in extra], "unique detectors"):
        # names are never cut short: the numbers' headers wrap instead
        table.add_column(col, justify="left" if col in widths else "right",
                         min_width=widths.get(col), no_wrap=col in widths)
    for member, name, s in summaries:
        table.add_row(member.name, f"{member.x:g}", name, str(s["units"]), str(s["detectors"]),
                      *[dash(s.get(k)) for k in extra], str(s["unique_detectors"]))
    console.print(table)
