"""``ndcore report``, ``compare`` and ``explain``: looking at finished runs (no model needed,
except to explain an image)."""

from __future__ import annotations

import argparse

from rich.table import Table

from ..conventions import UNIONS
from .args import csv_list, parse_floats
from .console import console
from .tables import dash, percent, statistics_headers


def cmd_report(args: argparse.Namespace) -> int:
    from ..report.html import write_report

    index = write_report(args.run, cutoff=args.cutoff, categories=csv_list(args.categories),
                         union=args.union, fdr=args.fdr, topk=args.topk, workers=args.workers,
                         progress=not args.quiet)
    console.print(f"report written to [bold]{index}[/bold]")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..capture.rotation import parse_derived
    from ..figures.charts import x_text
    from ..report.compare import compare_runs, rotation_chart_path, series_chart_path

    rows, svg = compare_runs(args.runs, out=args.out, cutoff=args.cutoff, union=args.union,
                             fdr=args.fdr, x=parse_floats(args.x, "--x", "0,100,1000 (one per run)"), x_label=args.x_label)
    categories = list(rows[0]["categories"]) if rows else []
    # chance and confidence columns only where some run has them; '-' for a layer without
    extra = [k for k in ("detectors_fdr", "stable_labels")
             if any(r[k] is not None for r in rows)]
    headers = statistics_headers(r["fdr"] for r in rows)
    along_x = any(r["x"] is not None for r in rows)  # a series, or --x: an x column
    table = Table(title="Runs compared (category cells: detectors / unique detectors)")
    for col in ("run", *(["x"] if along_x else []), "layer", "units", "detectors",
                *[headers[k] for k in extra], "unique", *categories):
        table.add_column(col, justify="left" if col in ("run", "layer") else "right")
    for r in rows:
        x_cell = [dash(None if r["x"] is None else x_text(r["x"]))] if along_x else []
        table.add_row(r["run"], *x_cell, r["layer"], str(r["units"]), str(r["detectors"]),
                      *[_fdr_cell(r, rows) if k == "detectors_fdr" else dash(r[k])
                        for k in extra],
                      str(r["unique_detectors"]),
                      *[f"{r['categories'][c]['detectors']}/{r['categories'][c]['unique']}"
                        for c in categories])
    console.print(table)
    console.print(f"chart written to [bold]{svg}[/bold]")
    if any(parse_derived(r["layer"]) for r in rows):
        console.print(f"rotation chart written to [bold]{rotation_chart_path(svg)}[/bold]")
    if along_x:
        console.print(f"series chart written to [bold]{series_chart_path(svg)}[/bold]")
    return 0


def _fdr_cell(row: dict, rows: list) -> str:
    """The significant detectors; with their rate when the runs were tested at several."""
    if row["detectors_fdr"] is None:
        return "-"
    if len({r["fdr"] for r in rows if r["fdr"] is not None}) > 1:
        return f"{row['detectors_fdr']} ({percent(row['fdr'])})"
    return str(row["detectors_fdr"])


def cmd_explain(args: argparse.Namespace) -> int:
    from ..report.explain import explain_image

    png, found = explain_image(args.run, args.image, layer=args.layer, top=args.top,
                               out=args.out, device=args.device)
    table = Table(title=f"Detector units active on {args.image}")
    for col in ("unit", "label", "category", "IoU", "share of image"):
        table.add_column(col, justify="right" if col in ("unit", "IoU", "share of image") else "left")
    for unit, label, cat, iou, share in found:
        table.add_row(str(unit), label, cat, f"{iou:.3f}", f"{100 * share:.1f}%")
    if found:
        console.print(table)
    else:
        console.print("no detector unit of this layer is active on the image")
    console.print(f"picture written to [bold]{png}[/bold]")
    return 0


def register(subparsers) -> None:
    """Add ``report``, ``compare`` and ``explain`` to the ``ndcore`` subcommand parsers."""
    p = subparsers.add_parser("report", help="write an HTML report of a run (no model needed)")
    p.add_argument("run", help="run directory written by `ndcore dissect --out`")
    p.add_argument("--cutoff", type=float, help="IoU above which a unit detects (default: run's)")
    p.add_argument("--categories", help="comma-separated subset of categories")
    p.add_argument("--union", choices=UNIONS, help="union convention")
    p.add_argument("--fdr", type=float, metavar="Q",
                   help="false discovery rate of the significant detectors (default: run's)")
    p.add_argument("--topk", type=int, default=10, help="top images shown per unit")
    p.add_argument("--workers", type=int, default=2, help="threads that draw the image strips")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("compare", help="compare runs: detectors per layer, side by side")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories; a series directory (series.json) stands for its "
                        "members, in order")
    p.add_argument("--out", help="SVG chart file (default compare.svg)")
    p.add_argument("--cutoff", type=float, help="relabel every run with this cut-off")
    p.add_argument("--union", choices=UNIONS, help="relabel every run")
    p.add_argument("--fdr", type=float, metavar="Q",
                   help="test every run's significant detectors at this false discovery rate")
    p.add_argument("--x", metavar="V1,V2,...",
                   help="x values, one per run (a series counts its members): draws the runs "
                        "against them in a series chart (a series has its own)")
    p.add_argument("--x-label", metavar="NAME", help="name of the x-axis (e.g. iteration)")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("explain", help="segment one image with a layer's detector units")
    p.add_argument("run", help="run directory")
    p.add_argument("image", help="image file")
    p.add_argument("--layer", help="layer (default: the run's last layer)")
    p.add_argument("--top", type=int, default=5, help="most active detector units drawn")
    p.add_argument("--out", help="PNG file (default RUN_DIR/explain/<image>-<layer>.png)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.set_defaults(func=cmd_explain)
