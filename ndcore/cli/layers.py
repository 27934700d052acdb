"""``ndcore layers``: a model's modules, their output shapes, and which can be dissected."""

from __future__ import annotations

from rich.table import Table

from .args import parse_size
from .console import console


def cmd_layers(args) -> int:
    from ..api import resolve_model
    from ..capture import layer_shapes

    adapter = resolve_model(args.model, args.weights, random_init=True)
    size = parse_size(args.input_size, "--input-size") or adapter.input_size
    shapes = layer_shapes(adapter.module, size)
    table = Table(title=f"{adapter.spec}: modules and output shapes for input {size[0]}x{size[1]}")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("dissectable")
    modules = dict(adapter.module.named_modules())
    for name, shape in shapes.items():
        ok = shape is not None and len(shape) == 4
        table.add_row(name, type(modules[name]).__name__, str(list(shape) if shape else "-"),
                      "yes" if ok else "")
    console.print(table)
    return 0


def register(sub) -> None:
    p = sub.add_parser("layers", help="list a model's modules with their output shapes")
    p.add_argument("model")
    p.add_argument("--weights")
    p.add_argument("--input-size", help="N or HxW")
    p.set_defaults(func=cmd_layers)
