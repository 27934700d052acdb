"""``ndcore dissect``: dissect layers of a model on a probe dataset."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..engine.options import DissectOptions, Flag
from ..errors import NdcoreError
from .adapter_help import AdapterHelpFormatter, add_adapter_option
from .args import csv_list, parse_ints, parse_size
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
    out = []
    for text in csv_list(value) or []:
        try:
            out.append(float(text))
        except ValueError:
            raise NdcoreError(f"--rotate-alpha {value!r}: expected numbers, e.g. "
                              "0,0.25,0.5,0.75,1") from None
    return tuple(out)


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


def register(sub) -> None:
    p = sub.add_parser("dissect", help="dissect layers of a model on a probe dataset",
                       formatter_class=AdapterHelpFormatter)  # lists the installed adapters
    add_adapter_option(p, "--model", "model", required=True,
                       help="model adapter spec NAME:TARGET (or DIST:NAME:TARGET when two "
                            "plugins use NAME)")
    p.add_argument("--weights", help="local state dict (.pth), or a checkpoint holding one under "
                                     "state_dict / model / ...; 'module.' prefixes are stripped")
    p.add_argument("--weights-sha256", metavar="HEX",
                   help="the --weights file's sha256, full or a prefix (8+ hex digits), checked "
                        "before loading; a name like resnet18-f37072fd.pth is checked always")
    p.add_argument("--random-init", action="store_true", help="allow random weights (no --weights)")
    p.add_argument("--layers", required=True, help="comma-separated dotted module names")
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
    p.add_argument("--normalize", help="imagenet, netdissect, none, or R,G,B/R,G,B (0-255)")
    p.add_argument("--resize", help="resize images to N or HxW before the model")
    add_option_flags(p, ("thresholds", "layouts"))
    add_run_options(p)
    p.set_defaults(func=cmd_dissect)
