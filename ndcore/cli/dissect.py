"""``ndcore dissect``: dissect layers of a model on a probe dataset."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..engine.options import DissectOptions, Flag
from ..errors import NdcoreError
from .adapter_help import AdapterHelpFormatter, add_adapter_option
from .args import csv_list, parse_floats, parse_ints, parse_size
from .console import console


def _parse_thresholds(values: List[str]) -> Dict[str, str]:
    out = {}
    for value in values or []:
        layer, sep, path = value.partition("=")
        if not sep or not layer or not path:
            raise NdcoreError(f"--thresholds {value!r}: expected LAYER=FILE.npy")
        out[layer] = path
    return out


def _parse_layouts(values: List[str]) -> Dict[str, str]:
    from ..capture import parse_layout_options  # loads torch: only once a run starts

    return parse_layout_options(values)


def _parse_alphas(value: Any) -> Tuple[float, ...]:
    if not isinstance(value, str):  # not given: the options' default
        return tuple(value)
    return tuple(parse_floats(value, "--rotate-alpha", "0,0.25,0.5,0.75,1"))


# How the command line's text becomes the value of the options that are not one number or word.
PARSE_VALUE: Dict[str, Callable[[Any], Any]] = {
    "categories": csv_list, "thresholds": _parse_thresholds, "layouts": _parse_layouts,
    "rotate": lambda values: list(values or []), "rotate_alpha": _parse_alphas}

# The run options' flags in the order --help lists them (after --thresholds and --layout); each
# flag's name, default, choices and help are DissectOptions' (ndcore/engine/options.py).
RUN_FLAGS = ("union", "quantile", "quantile_on", "cutoff", "categories", "batch_size", "device",
             "precision", "compile", "workers", "topk", "max_images", "second_pass", "cache_dir",
             "cache_memory_mb", "checkpoint_every", "overwrite", "threshold", "rotate",
             "rotate_alpha", "rotate_seed", "null_permutations", "bootstrap", "resample_seed",
             "fdr")


def add_option_flags(p: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """The flags of the :class:`DissectOptions` fields ``names``, as their metadata says."""
    options = {f.name: f for f in fields(DissectOptions)}
    for name in names:
        flag: Flag = options[name].metadata["flag"]
        settings = {"dest": name, "help": flag.help, "action": flag.action, "type": flag.value_type,
                    "choices": flag.choices, "metavar": flag.metavar}
        if flag.action is None:  # None where the command line has its own default
            settings["default"] = (options[name].default if flag.command_line_default is None
                                   else None)
        p.add_argument(flag.name, **{k: v for k, v in settings.items() if v is not None})


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_option_flags(p, RUN_FLAGS)
    p.add_argument("--no-null", action="store_true",
                   help="no chance statistics: the same as --null-permutations 0")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def _null_permutations(args: argparse.Namespace) -> None:
    """--no-null is --null-permutations 0; given with a positive N, which one was meant?"""
    if not getattr(args, "no_null", False):
        return
    if args.null_permutations:
        raise NdcoreError(f"--no-null: contradicts --null-permutations "
                          f"{args.null_permutations}; give one of them")
    args.null_permutations = 0


def _options(args: argparse.Namespace) -> DissectOptions:
    """The run options (shared by image and generator dissection), from their flags."""
    _null_permutations(args)
    values = {}
    for f in fields(DissectOptions):
        flag = f.metadata.get("flag")
        if flag is None:
            continue
        value = getattr(args, f.name)
        if f.name in PARSE_VALUE:
            value = PARSE_VALUE[f.name](value)
        elif value is None and flag.command_line_default is not None:
            value = flag.command_line_default
        values[f.name] = value
    return DissectOptions(**values)


def cmd_dissect(args: argparse.Namespace) -> int:
    from .tables import print_summary

    series = _is_series(args)
    args.weights = expand_weights(args.weights)
    if series:
        return _dissect_series(args)
    args.model, args.layers = args.model[0], _one(args.layers, "--layers")
    args.weights = _one(args.weights, "--weights") if args.weights else None
    if args.x is not None or args.x_label is not None:
        raise NdcoreError("--x and --x-label place the members of a series; give several "
                          "--weights or --model")
    if args.dataset is None and args.segmenter is None:
        raise NdcoreError("give --dataset SPEC (images), --segmenter SPEC (a generator's own "
                          "samples), or both (--dataset images:DIR labelled by the segmenter)")
    if args.dataset is None:
        from ..api import run_generator_dissection

        generator_only = [o for o, v in (("--categories", args.categories),
                                         ("--max-images", args.max_images),
                                         ("--normalize", args.normalize),
                                         ("--resize", args.resize),
                                         ("--workers", args.workers is not None)) if v]
        if generator_only:  # samples are generated in the run's own process: no loader
            raise NdcoreError(f"{generator_only[0]} applies to --dataset runs; a generator "
                              "run takes --samples and --seed")
        result = run_generator_dissection(
            args.model, csv_list(args.layers) or [], args.segmenter, args.out,
            samples=args.samples, seed=args.seed, weights=args.weights,
            weights_sha256=args.weights_sha256,
            random_init=args.random_init,
            latent_shape=parse_ints(args.latent_shape, "--latent-shape"), quiet=args.quiet,
            options=_options(args))
    else:
        from ..api import run_dissection

        result = run_dissection(
            args.model, csv_list(args.layers) or [], args.dataset, args.out,
            weights=args.weights, weights_sha256=args.weights_sha256,
            random_init=args.random_init, normalize=args.normalize,
            resize=parse_size(args.resize, "--resize"), quiet=args.quiet,
            segmenter=args.segmenter, options=_options(args))
    if result is None:  # a torch.distributed rank other than 0: rank 0 reports
        return 0
    print_summary(result)
    if not args.no_report:
        from ..report import write_report

        index = write_report(args.out, progress=not args.quiet)
        console.print(f"report: [bold]{index}[/bold]")
    console.print(f"results written to [bold]{args.out}[/bold]")
    return 0


def _one(values: List[str], flag: str) -> str:
    if len(values) > 1:
        raise NdcoreError(f"{flag} given {len(values)} times for one model")
    return values[0]


def _is_series(args: argparse.Namespace) -> bool:
    """Several models or weights files, or a glob (even of one file): a series (one run
    directory per member)."""
    import glob

    return len(args.model) > 1 or len(args.weights) > 1 or \
        any(glob.has_magic(w) for w in args.weights)


def expand_weights(values: List[str]) -> List[str]:
    """``--weights`` values with globs expanded: each glob's files sorted by the training
    iteration in their names (then by name); a glob that matches nothing is refused."""
    import glob

    from ..results.series import iteration_of

    out: List[str] = []
    for value in values:
        if not glob.has_magic(value):
            out.append(value)
            continue
        found = sorted((f for f in glob.glob(value) if not Path(f).is_dir()),
                       key=lambda f: (iteration_of(f) is None, iteration_of(f) or 0, f))
        if not found:
            raise NdcoreError(f"--weights {value!r}: no file matches")
        out += found
    return out


def _dissect_series(args: argparse.Namespace) -> int:
    from ..api import run_series
    from .tables import print_series

    if args.dataset is None:
        raise NdcoreError("a series dissects models on a probe dataset: give --dataset SPEC "
                          "(a generator's own samples differ per generator; dissect each apart)")
    if args.weights_sha256:
        raise NdcoreError("--weights-sha256 checks one --weights file; a series takes none")
    x = parse_floats(args.x, "--x", "0,100,1000")
    layers = args.layers[0] if len(args.layers) == 1 else [csv_list(l) or [] for l in args.layers]
    series = run_series(args.model, layers, args.dataset, args.out, weights=args.weights, x=x,
                        x_label=args.x_label, random_init=args.random_init,
                        normalize=args.normalize, resize=parse_size(args.resize, "--resize"),
                        quiet=args.quiet, segmenter=args.segmenter, options=_options(args))
    if series is None:  # a torch.distributed rank other than 0
        return 0
    print_series(series)
    if not args.no_report:
        from ..report import write_report

        for member, _ in series:
            write_report(Path(args.out) / member.run, progress=not args.quiet)
        console.print(f"reports: [bold]{Path(args.out)}/*/index.html[/bold]")
    console.print(f"series written to [bold]{args.out}[/bold] ({len(series.results)} runs, "
                  f"series.json; `ndcore compare {args.out}` draws it)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("dissect", help="dissect layers of a model on a probe dataset",
                       formatter_class=AdapterHelpFormatter)  # lists the installed adapters
    add_adapter_option(p, "--model", "model", required=True, action="append",
                       help="model adapter spec NAME:TARGET (or DIST:NAME:TARGET when two "
                            "plugins use NAME); several: a series of models (one run each, "
                            "one pass over the probe data)")
    p.add_argument("--weights", action="append", default=[],
                   help="local state dict (.pth), or a checkpoint holding one under "
                        "state_dict / model / ...; 'module.' prefixes are stripped. Several, or "
                        "a glob ('ckpt/*.pt'): a series, one run directory each under --out "
                        "(named after the file) and --out/series.json")
    p.add_argument("--weights-sha256", metavar="HEX",
                   help="the --weights file's sha256, full or a prefix (8+ hex digits), checked "
                        "before loading; a name like resnet18-f37072fd.pth is checked always")
    p.add_argument("--random-init", action="store_true", help="allow random weights (no --weights)")
    p.add_argument("--layers", required=True, action="append",
                   help="comma-separated dotted module names (a series: once for every model, "
                        "or once per --model)")
    add_adapter_option(p, "--dataset", "dataset",
                       help="dataset adapter spec NAME:TARGET (or DIST:NAME:TARGET when two "
                            "plugins use NAME)")
    g = p.add_argument_group("generators (GAN dissection: the probe images are the model's "
                             "own samples, labelled by a segmenter)")
    add_adapter_option(g, "--segmenter", "segmenter",
                       help="segmenter spec NAME:TARGET; alone: a generator's samples; "
                            "with --dataset images:DIR: labels those images on the fly")
    g.add_argument("--samples", type=int, default=1000, help="samples z ~ N(0, I) to dissect")
    g.add_argument("--seed", type=int, default=0, help="seed of the samples (sample i is a "
                                                       "function of seed and i)")
    g.add_argument("--latent-shape", metavar="N[,H,W]",
                   help="the generator's latent shape, e.g. 100,1,1 (default: the adapter's)")
    p.add_argument("--out", required=True, help="output directory")
    s = p.add_argument_group("series (several --weights or --model)")
    s.add_argument("--x", metavar="V1,V2,...",
                   help="the members' values on the series' x-axis (default: the training "
                        "iteration in the weights' file names, else their order)")
    s.add_argument("--x-label", help="the x-axis' name (default: iteration, or order)")
    p.add_argument("--normalize", help="imagenet, netdissect, none, or R,G,B/R,G,B (0-255)")
    p.add_argument("--resize", help="resize images to N or HxW before the model")
    add_option_flags(p, ("thresholds", "layouts"))
    add_run_options(p)
    p.set_defaults(func=cmd_dissect)
