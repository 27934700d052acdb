"""``ndcore layers``: a model's modules, their output shapes, layouts and units, and which can
be dissected."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .args import parse_size
from .console import console


def cmd_layers(args) -> int:
    from ..specs import resolve_model
    from ..capture import describe_layers, parse_layout_options
    from ..engine import DissectOptions

    overrides = parse_layout_options(args.layout)
    adapter = resolve_model(args.model, args.weights, random_init=True)
    size = parse_size(args.input_size, "--input-size") or adapter.input_size
    # notes on maps too small to threshold, at the top quantile `ndcore dissect` uses by default
    rows = describe_layers(adapter.module, size, [overrides, adapter.layouts],
                           quantile=DissectOptions.quantile)
    table = Table(title=f"{adapter.spec}: modules for input {size[0]}x{size[1]} "
                        "(units are numbered by channel in every layout)")
    shown = rows
    longest = max((len(r.name) for r in shown), default=5)
    table.add_column("layer", min_width=min(longest, 48), overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("output shape", no_wrap=True)
    table.add_column("layout", overflow="fold")
    for col in ("units", "map"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("dissectable")
    hints = {}  # what to do, once per kind of problem
    for r in shown:
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
    console.print(table)
    for name, hint in hints.values():
        console.print(f"{escape(name)} (and similar): {escape(hint)}", highlight=False,
                      soft_wrap=True)
    return 0


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
    p.add_argument("--weights")
    p.add_argument("--input-size", help="N or HxW")
    p.add_argument("--layout", action="append", metavar="LAYER=LAYOUT",
                   help="try a layout for a layer, as `ndcore dissect --layout` would")
    p.set_defaults(func=cmd_layers)
