"""``ndcore formulas RUN --layer L``: each unit's best logical formula over the probe set's
labels (compositional explanations), written to ``<layer>/formulas.json`` and printed."""

from __future__ import annotations

import argparse

from rich import box
from rich.markup import escape
from rich.table import Table

from ..errors import NdcoreError
from .args import csv_list, parse_ints
from .console import console


def cmd_formulas(args: argparse.Namespace) -> int:
    from ..formulas.pipeline import explain_layer

    units = parse_ints(args.units, "--units")
    if args.units is not None and not units:
        raise NdcoreError(f"--units {args.units!r}: name at least one unit")
    done = explain_layer(args.run, args.layer, length=args.length, search=args.search,
                         beam=args.beam, units=units, categories=csv_list(args.categories),
                         device=args.device, workers=args.workers, quiet=args.quiet)
    # both IoUs over all probe images (the plain union), so that they compare
    table = Table(title=f"Formulas of {escape(args.layer)} ({args.search} search, length <= "
                        f"{args.length}; IoU over all images)", box=box.SIMPLE_HEAD)
    for col in ("unit", "single label", "IoU", "formula", "formula IoU", "proved best"):
        table.add_column(col, justify="right" if "IoU" in col or col == "unit" else "left")
    for row in done.rows:
        label, iou = done.singles[row["unit"]]
        table.add_row(str(row["unit"]), escape(label or "-"), f"{iou:.4f}",
                      escape(row["formula"] or "-"), f"{row['iou']:.4f}",
                      "yes" if row["optimal"] else "no")
    console.print(table)
    console.print(f"{len(done.rows)} units, {done.header['images']} images, "
                  f"{done.header['seconds']:.1f} s; written to [bold]{escape(str(done.path))}"
                  "[/bold]", highlight=False)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "formulas", help="each unit's best logical formula over the labels (compositional "
                         "explanations)",
        description="Search, for each unit of a finished run's layer, the left-deep formula "
                    "of labels joined by OR, AND, AND NOT whose mask best matches the unit's "
                    "(IoU over all pixels of all probe images; docs/method.md, "
                    "'Compositional explanations'). Writes <layer>/formulas.json.")
    p.add_argument("run", help="run directory written by `ndcore dissect --out`")
    p.add_argument("--layer", required=True, help="the layer whose units to explain")
    p.add_argument("--length", type=int, default=3, help="most labels in a formula (default 3)")
    p.add_argument("--search", choices=("optimal", "beam"), default="optimal",
                   help="optimal: proved best by bounds (default); beam: compexp's beam search")
    p.add_argument("--beam", type=int, default=5, help="beam width of --search beam (default 5)")
    p.add_argument("--units", help="comma-separated units (0-based; default: all)")
    p.add_argument("--categories", help="comma-separated categories whose labels formulas use "
                                        "(default: the run's)")
    p.add_argument("--device", help="where the model runs (default: the run's device if "
                                    "available, else cpu)")
    p.add_argument("--workers", type=int, default=2, help="loader processes reading the probe "
                                                          "images (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_formulas)
