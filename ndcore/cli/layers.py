"""``ndcore layers``: a model's modules, their output shapes, layouts and units, and which can
be dissected."""

from __future__ import annotations

import json
import re
import sys
import warnings
from typing import Any, Dict, List

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .args import parse_size
from .console import console

FORMATS = ("table", "tsv", "json")
TSV_COLUMNS = ("layer", "type", "output_shape", "layout", "units", "map", "dissectable", "note")


def cmd_layers(args) -> int:
    from ..specs import resolve_model
    from ..capture import describe_layers, parse_layout_options
    from ..engine import DissectOptions
    from ..models import random_init_caveat

    overrides = parse_layout_options(args.layout)
    with warnings.catch_warnings():
        # Shapes do not depend on the weights: without --weights any will do, and the user
        # asked for no random init, so the random-init warning would be untrue here.
        warnings.filterwarnings("ignore", message=".*" + re.escape(random_init_caveat("")))
        adapter = resolve_model(args.model, args.weights, random_init=not args.weights,
                                weights_sha256=args.weights_sha256)
    size = parse_size(args.input_size, "--input-size") or adapter.input_size
    # notes on maps too small to threshold, at the top quantile `ndcore dissect` uses by default
    rows = describe_layers(adapter.module, size, [overrides, adapter.layouts],
                           quantile=DissectOptions.quantile)
    if args.format == "json":
        # one object a line: valid JSON that grep and diff can still read
        print("[\n" + ",\n".join(json.dumps(_record(r)) for r in rows) + "\n]")
    elif args.format == "tsv":
        print("\t".join(TSV_COLUMNS))
        for r in rows:
            print("\t".join(_tsv_cell(r, c) for c in TSV_COLUMNS))
    else:
        _print_table(adapter.spec, size, rows)
    return 0


def _record(r) -> Dict[str, Any]:
    """One layer as a JSON object (``null`` where the table shows "-")."""
    return {"layer": r.name, "type": r.type, "output_shape": list(r.shape) if r.shape else None,
            "layout": str(r.layout) if r.layout else None, "units": r.units or None,
            "map": list(r.map_size) if r.map_size else None, "dissectable": r.dissectable,
            "note": r.note or None, "problem": r.problem or None}


def _tsv_cell(r, column: str) -> str:
    """A cell without spaces in every column but the last (``awk`` splits on blanks), and "-"
    for nothing, so that no field is empty."""
    value = {"layer": r.name, "type": r.type,
             "output_shape": ",".join(map(str, r.shape)) if r.shape else "",
             "layout": str(r.layout) if r.layout else "", "units": str(r.units or ""),
             "map": f"{r.map_size[0]}x{r.map_size[1]}" if r.map_size else "",
             "dissectable": "yes" if r.dissectable else "no",
             "note": r.note if r.dissectable else _reason(r.name, r.problem)}[column]
    return re.sub(r"\s+", " ", value).strip() or "-"


def _print_table(spec: str, size, rows: List) -> None:
    table = Table(title=f"{spec}: modules for input {size[0]}x{size[1]} "
                        "(units are numbered by channel in every layout)")
    longest = max((len(r.name) for r in rows), default=5)
    table.add_column("layer", min_width=min(longest, 48), overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("output shape", no_wrap=True)
    table.add_column("layout", overflow="fold")
    for col in ("units", "map"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("dissectable")
    hints = {}  # what to do, once per kind of problem
    for r in rows:
        if r.dissectable:
            verdict = "yes" + (f" [yellow]({escape(r.note)})[/yellow]" if r.note else "")
        else:
            what, _, hint = _reason(r.name, r.problem).partition("; ")
            verdict = f"[dim]no: {escape(what)}[/dim]"
            if hint:
                hints.setdefault(hint.replace(r.name, "LAYER"), (r.name, hint))
        table.add_row(escape(r.name), r.type, str(list(r.shape)) if r.shape else "-",
                      str(r.layout) if r.layout else "-", str(r.units or "-"),
                      f"{r.map_size[0]}x{r.map_size[1]}" if r.map_size else "-", verdict)
    # Piped (`ndcore layers M | grep ...`): rich would fold the table to 80 columns and cut
    # the map and dissectable columns; print it at its natural width instead.
    out = console if console.is_terminal else Console(file=sys.stdout, width=100_000)
    out.print(table)
    for name, hint in hints.values():
        out.print(f"{escape(name)} (and similar): {escape(hint)}", highlight=False,
                  soft_wrap=True)


def _reason(name: str, problem: str) -> str:
    """The error without its "layer 'NAME' " prefix (the row names the layer)."""
    for prefix in (f"layer {name!r} cannot be dissected: ", f"layer {name!r} "):
        if problem.startswith(prefix):
            return problem[len(prefix):]
    return problem


def register(sub) -> None:
    p = sub.add_parser("layers", help="list a model's modules with their output shapes, "
                                      "layouts and units")
    p.add_argument("model")
    p.add_argument("--weights", help="a state dict to load (shapes do not depend on the "
                                     "weights: without it any weights will do)")
    p.add_argument("--weights-sha256", metavar="HEX",
                   help="the --weights file's sha256, full or a prefix, checked before loading")
    p.add_argument("--input-size", help="N or HxW")
    p.add_argument("--layout", action="append", metavar="LAYER=LAYOUT",
                   help="try a layout for a layer, as `ndcore dissect --layout` would")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (full width when piped), tsv (a header line, then tab-separated "
                        "rows) or json (a list of objects), for scripts")
    p.set_defaults(func=cmd_layers)
