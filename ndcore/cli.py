"""The ``ndcore`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Dict, List, Optional

from rich import box
from rich.console import Console
from rich.table import Table

from .cliargs import csv_list
from .errors import NdcoreError

console = Console()


def _parse_thresholds(values: List[str]) -> Dict[str, str]:
    out = {}
    for value in values or []:
        layer, sep, path = value.partition("=")
        if not sep or not layer or not path:
            raise NdcoreError(f"--thresholds {value!r}: expected LAYER=FILE.npy")
        out[layer] = path
    return out


def _resize(value: Optional[str]):
    if not value:
        return None
    parts = value.lower().replace("x", ",").split(",")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        raise NdcoreError(f"--resize {value!r}: expected N or HxW") from None
    return (size[0], size[0]) if len(size) == 1 else tuple(size[:2])


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--union", default="paper", choices=["paper", "lite", "plain"],
                   help="union convention (METHOD.md section 2)")
    p.add_argument("--quantile", type=float, default=0.005, help="top quantile per unit")
    p.add_argument("--quantile-on", default="raw", choices=["raw", "upsampled"],
                   help="take the quantile over the layer maps or the upsampled maps")
    p.add_argument("--cutoff", type=float, default=0.04, help="IoU above which a unit detects")
    p.add_argument("--categories", help="comma-separated subset of categories")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--topk", type=int, default=10, help="top images kept per unit")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--second-pass", default="auto", choices=["auto", "cache", "forward"],
                   help="pass 2 from kept candidate maps on disk (cache) or a second forward pass")
    p.add_argument("--cache-dir", help="scratch directory for kept maps (default: system temp)")
    p.add_argument("--cache-memory-mb", type=float,
                   help="kept maps held in (device) memory before spilling to --cache-dir "
                        "(default: a third of a GPU's free memory; 0 on the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def cmd_dissect(args) -> int:
    from .api import run_dissection

    result = run_dissection(
        args.model, csv_list(args.layers) or [], args.dataset, args.out,
        weights=args.weights, random_init=args.random_init, normalize=args.normalize,
        resize=_resize(args.resize), quiet=args.quiet, union=args.union,
        quantile=args.quantile, quantile_on=args.quantile_on, cutoff=args.cutoff,
        categories=csv_list(args.categories), thresholds=_parse_thresholds(args.thresholds),
        batch_size=args.batch_size, device=args.device, workers=args.workers, topk=args.topk,
        max_images=args.max_images, second_pass=args.second_pass, cache_dir=args.cache_dir,
        cache_memory_mb=args.cache_memory_mb,
    )
    print_summary(result)
    if not args.no_report:
        from .report import write_report

        index = write_report(args.out, progress=not args.quiet)
        console.print(f"report: [bold]{index}[/bold]")
    console.print(f"results written to [bold]{args.out}[/bold]")
    return 0


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


def cmd_summary(args) -> int:
    from .results import DissectionResult

    result = DissectionResult.load(args.run, union=args.union, cutoff=args.cutoff,
                                   categories=csv_list(args.categories))
    print_summary(result, top=args.top)
    if args.write:
        result.write_labels()
        console.print(f"relabelled tally.csv and summaries written to {args.run}")
    return 0


def cmd_layers(args) -> int:
    from .api import resolve_model
    from .capture import layer_shapes

    adapter = resolve_model(args.model, args.weights, random_init=True)
    size = _resize(args.input_size) or adapter.input_size
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


def cmd_plugins(args) -> int:
    from .plugins import get_plugin_manager

    table = Table(title="ndcore plugins")
    for col in ("plugin", "distribution", "version", "models", "datasets", "status"):
        table.add_column(col)
    for info in get_plugin_manager().plugin_infos():
        status = f"[red]failed: {info.error}[/red]" if info.error else "ok"
        table.add_row(info.name, info.distribution, info.version, ", ".join(info.models),
                      ", ".join(info.datasets), status)
    console.print(table)
    return 0


def cmd_info(args) -> int:
    import numpy
    import torch

    from . import __version__
    from .ops import extension_info

    ext = extension_info()
    table = Table(title="ndcore info", show_header=False)
    table.add_row("ndcore", __version__)
    table.add_row("python", sys.version.split()[0])
    table.add_row("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
    table.add_row("numpy", numpy.__version__)
    table.add_row("extension ndcore._C", "loaded" if ext["loaded"] else f"[red]missing: {ext['error']}[/red]")
    table.add_row("compiled kernels", ", ".join(k for k in ("CPU", "CUDA") if ext["loaded"] and (k == "CPU" or ext["cuda"])) or "none (reference fallback)")
    table.add_row("OpenMP", str(bool(ext.get("openmp"))))
    table.add_row("CPU threads", str(torch.get_num_threads()))
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    table.add_row("CUDA devices", ", ".join(gpus) or "none")
    console.print(table)
    return 0


def cmd_demo(args) -> int:
    from .demo.run import run_demo

    run_demo(out=args.out, size=args.size, quiet=args.quiet, workers=args.workers,
             report=not args.no_report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndcore", description="Network Dissection, fast.")
    parser.add_argument("--log-file", help="also write log messages and warnings to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dissect", help="dissect layers of a model on a probe dataset")
    p.add_argument("--model", required=True, help="torchvision:NAME, python:FILE.py:FACTORY, demo")
    p.add_argument("--weights", help="local state dict (.pth); 'module.' prefixes are stripped")
    p.add_argument("--random-init", action="store_true", help="allow random weights (no --weights)")
    p.add_argument("--layers", required=True, help="comma-separated dotted module names")
    p.add_argument("--dataset", required=True, help="broden:DIR or synthetic[:SIZE]")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--normalize", help="imagenet, netdissect, none, or R,G,B/R,G,B (0-255)")
    p.add_argument("--resize", help="resize images to N or HxW before the model")
    p.add_argument("--thresholds", action="append", metavar="LAYER=FILE.npy",
                   help="use given per-unit thresholds for a layer (repeatable)")
    add_run_options(p)
    p.set_defaults(func=cmd_dissect)

    p = sub.add_parser("summary", help="print (or relabel) a saved run")
    p.add_argument("run")
    p.add_argument("--union", choices=["paper", "lite", "plain"])
    p.add_argument("--cutoff", type=float)
    p.add_argument("--categories")
    p.add_argument("--top", type=int, default=2, help="best units shown per category and layer")
    p.add_argument("--write", action="store_true", help="rewrite tally.csv with these settings")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("layers", help="list a model's modules with their output shapes")
    p.add_argument("model")
    p.add_argument("--weights")
    p.add_argument("--input-size", help="N or HxW")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("plugins", help="list plugins and what they provide")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("info", help="versions, compiled kernels, devices")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="dissect the demo CNN on the built-in synthetic dataset")
    p.add_argument("--out", default="ndcore-demo", help="output directory")
    p.add_argument("--size", type=int, default=1000, help="images in the synthetic probe set")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(func=cmd_demo)

    from .report.commands import register_commands  # report, compare, explain

    register_commands(sub)
    return parser


def _setup_logging(log_file: Optional[str]) -> None:
    if not log_file:
        return
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_file)
    warnings.simplefilter("default")
    try:
        return args.func(args)
    except NdcoreError as e:
        console.print(f"[bold red]error:[/bold red] {e}", highlight=False)
        if args.log_file:
            logging.getLogger("ndcore").error(str(e))
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
