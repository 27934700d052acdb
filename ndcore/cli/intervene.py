"""``ndcore intervene``: edit a dissected generator's units and measure the causal effect."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..errors import NdcoreError
from .args import parse_ints
from .console import console


def default_output(args: argparse.Namespace, region, insert) -> Path:
    """RUN/interventions/NAME, NAME from the edit: each edit keeps its own folder."""
    from ..gan.editing.intervene import intervention_name, run_layers

    layers = run_layers(args.run)
    # the run's last layer by default, as the edit itself takes; "last" only when the run
    # cannot be read (and the intervention then stops with what is wrong with it)
    layer = args.layer or (layers[-1] if layers else "last")
    top = (parse_ints(args.top, "--top") or [1, 2, 4, 8]) if args.concept else None  # as the API
    name = intervention_name(layer, parse_ints(args.units, "--units"),
                             insert=None if args.ablate else insert, region=region,
                             seed=args.seed or 0, concept=args.concept, top=top)
    return Path(args.run) / "interventions" / name


def cmd_intervene(args: argparse.Namespace) -> int:
    from ..gan.editing.api import intervene
    from ..gan.editing.intervene import staged_output

    if args.edit is not None:
        return _replay(args)
    region = parse_ints(args.region, "--region")
    if region is not None and len(region) != 4:
        raise NdcoreError(f"--region {args.region!r}: expected X0,Y0,X1,Y1 (image pixels)")
    if args.insert not in (None, "default"):
        try:
            insert = float(args.insert)
        except ValueError:
            raise NdcoreError(f"--insert {args.insert!r}: expected a number") from None
    else:
        insert = True if args.insert == "default" else None
    from ..gan.editing.api import CLI_NAMES, check_request  # errors that name the flags
    check_request(ablate=args.ablate, insert=insert, units=args.units, concept=args.concept,
                  top=args.top, samples=args.samples, batch_size=args.batch_size,
                  names=CLI_NAMES)
    out = Path(args.out) if args.out else default_output(args, region, insert)
    with staged_output(out, args.overwrite) as stage:  # out is written whole, or left as it was
        result = intervene(
            args.run, args.layer, parse_ints(args.units, "--units"), ablate=args.ablate,
            insert=insert, region=tuple(region) if region else None, samples=args.samples,
            seed=0 if args.seed is None else args.seed, concept=args.concept,
            top=parse_ints(args.top, "--top") if args.concept else None, out=stage,
            device=args.device, batch_size=args.batch_size)
    if args.concept is not None:
        table = Table(title=f"Removing {args.concept!r}: its top units of {result['layer']} "
                            f"ablated ({args.samples} samples)")
        for col in ("units ablated", "units", "share of pixels", "remaining"):
            table.add_column(col, justify="right")
        table.add_row("0", "-", f"{result['before']:.4f}", "100%")
        for p in result["points"]:
            left = "-" if p["remaining"] is None else f"{100 * p['remaining']:.0f}%"
            table.add_row(str(p["k"]), ",".join(map(str, p["units"])), f"{p['fraction']:.4f}",
                          left)
        console.print(table)
        console.print(f"removal curve written to [bold]{out}[/bold] (removal.json, removal.svg)")
        return 0
    edit = result["edit"]
    table = Table(title=f"{edit['mode'].capitalize()} units {edit['units']} of {edit['layer']}: "
                        f"share of pixels per concept ({args.samples} samples)")
    for col in ("concept", "before", "after", "effect"):
        table.add_column(col, justify="left" if col == "concept" else "right")
    for label, e in sorted(result["concepts"].items(), key=lambda kv: kv[1]["effect"]):
        table.add_row(label, f"{e['before']:.4f}", f"{e['after']:.4f}", f"{e['effect']:+.4f}")
    console.print(table)
    console.print(f"effects.json and before/after grids written to [bold]{out}[/bold]")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """``--edit FILE.json``: the edit that ``ndcore paint`` downloaded, replayed exactly."""
    from ..gan.editing.api import intervene
    from ..gan.editing.intervene import staged_output

    given = [opt for opt, v in (("--units", args.units), ("--concept", args.concept),
                                ("--top", args.top), ("--region", args.region),
                                ("--insert", args.insert), ("--seed", args.seed)) if v is not None]
    given += ["--ablate"] if args.ablate else []
    if given:
        raise NdcoreError(f"--edit gives the seed, units, values and region itself: drop "
                          f"{', '.join(given)}")
    out = Path(args.out) if args.out else \
        Path(args.run) / "interventions" / "edits" / Path(args.edit).stem
    with staged_output(out, args.overwrite) as stage:
        result = intervene(args.run, args.layer, edit=args.edit, out=stage, device=args.device)
    e = result["edit"]
    painted = "everywhere" if e["region"] is None else \
        f"{sum(e['region']['rle'][1::2])} painted pixels"
    console.print(f"{e['mode'].capitalize()} units {e['units']} of {e['layer']} on sample 0 of "
                  f"seed {e['seed']} ({painted}); values {e['values']}", highlight=False)
    console.print(f"original.png, edited.png and edit.json written to [bold]{out}[/bold]")
    return 0


def register(sub) -> None:
    p = sub.add_parser("intervene", help="ablate or insert a generator's units; measure the effect")
    p.add_argument("run", help="a generator run written by `ndcore dissect --segmenter ...`")
    p.add_argument("--layer", help="layer to edit (default: the run's last layer)")
    p.add_argument("--units", help="comma-separated units, 0-based as in the summary and report")
    p.add_argument("--concept", help="with --top: ablate the units with the best IoU for it")
    p.add_argument("--top", help="with --concept: how many top units to ablate (default 1,2,4,8)")
    p.add_argument("--ablate", action="store_true", help="set the units to 0")
    p.add_argument("--insert", nargs="?", const="default", metavar="VALUE",
                   help="set the units to VALUE (default: each unit's threshold)")
    p.add_argument("--region", help="X0,Y0,X1,Y1: edit only there (generated image pixels)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--seed", type=int, help="the samples' seed (default 0)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--edit", metavar="FILE.json",
                   help="replay an edit saved by `ndcore paint` (its seed, units, values and "
                        "region): writes original.png and edited.png")
    p.add_argument("--out", help="output folder (default RUN/interventions/NAME, NAME from "
                                 "the edit, e.g. main.8-ablate-1-2-3; or "
                                 "RUN/interventions/edits/NAME with --edit)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier intervention in the output folder")
    p.set_defaults(func=cmd_intervene)
