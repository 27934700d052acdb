"""``ndcore dissect``: dissect layers of a model on a probe dataset."""

from __future__ import annotations

import argparse
from typing import Dict, List

from ..errors import NdcoreError
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


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--union", default="paper", choices=["paper", "lite", "plain"],
                   help="union convention (METHOD.md section 2)")
    p.add_argument("--quantile", type=float, default=0.005, help="top quantile per unit")
    p.add_argument("--quantile-on", default="raw", choices=["raw", "upsampled"],
                   help="take the quantile over the layer maps or the upsampled maps")
    p.add_argument("--cutoff", type=float, default=0.04, help="IoU above which a unit detects")
    p.add_argument("--categories", help="comma-separated subset of categories")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu",
                   help="cpu or cuda[:N] (under torchrun: cpu or cuda, one GPU per rank)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="run the forward pass under autocast (maps are counted in float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (a one-off compile time, then a faster forward)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader worker processes for --dataset runs (default 2)")
    p.add_argument("--topk", type=int, default=10, help="top images kept per unit")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--second-pass", default="auto", choices=["auto", "cache", "forward"],
                   help="pass 2 from kept candidate maps (cache) or a second forward pass")
    p.add_argument("--cache-dir",
                   help="scratch folder for kept maps, removed on exit (default: inside --out, "
                        "with the checkpoint, so that a resumed run keeps them)")
    p.add_argument("--cache-memory-mb", type=float,
                   help="kept maps held in (device) memory before going to disk "
                        "(default: a third of a GPU's free memory; 0 on the CPU)")
    p.add_argument("--checkpoint-every", type=float, default=120.0, metavar="SECONDS",
                   help="write a checkpoint this often; running the same command again "
                        "continues from it (0 = never; default 120)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a different run that --out holds")
    p.add_argument("--threshold", default="quantile", choices=["quantile", "best-iou"],
                   help="per-unit top quantile (NetDissect), or per (unit, concept) the "
                        "threshold with the best IoU (GAN Dissection)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def _options(args: argparse.Namespace) -> dict:
    """The run options shared by image and generator dissection."""
    from ..capture import parse_layout_options

    return dict(
        quiet=args.quiet, union=args.union, quantile=args.quantile,
        quantile_on=args.quantile_on, cutoff=args.cutoff,
        thresholds=_parse_thresholds(args.thresholds), batch_size=args.batch_size,
        device=args.device, workers=2 if args.workers is None else args.workers, topk=args.topk,
        second_pass=args.second_pass, cache_dir=args.cache_dir,
        cache_memory_mb=args.cache_memory_mb, checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite, precision=args.precision,
        layouts=parse_layout_options(args.layout), compile=args.compile,
        threshold=args.threshold)


def cmd_dissect(args: argparse.Namespace) -> int:
    from .tables import print_summary

    if (args.dataset is None) == (args.segmenter is None):
        raise NdcoreError("give --dataset SPEC (images) or --segmenter SPEC (a generator's "
                          "own samples), not both")
    if args.segmenter is not None:
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
            random_init=args.random_init,
            latent_shape=parse_ints(args.latent_shape, "--latent-shape"), **_options(args))
    else:
        from ..api import run_dissection

        result = run_dissection(
            args.model, csv_list(args.layers) or [], args.dataset, args.out,
            weights=args.weights, random_init=args.random_init, normalize=args.normalize,
            resize=parse_size(args.resize, "--resize"), categories=csv_list(args.categories),
            max_images=args.max_images, **_options(args))
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
    p = sub.add_parser("dissect", help="dissect layers of a model on a probe dataset")
    from ..plugins import adapter_help  # lists the installed adapters, only when help is shown

    p.add_argument("--model", required=True,
                   help=adapter_help("model", "model adapter spec NAME:TARGET (or "
                                     "DIST:NAME:TARGET when two plugins use NAME)"))
    p.add_argument("--weights", help="local state dict (.pth), or a checkpoint holding one under "
                                     "state_dict / model / ...; 'module.' prefixes are stripped")
    p.add_argument("--random-init", action="store_true", help="allow random weights (no --weights)")
    p.add_argument("--layers", required=True, help="comma-separated dotted module names")
    p.add_argument("--dataset",
                   help=adapter_help("dataset", "dataset adapter spec NAME:TARGET (or "
                                     "DIST:NAME:TARGET when two plugins use NAME)"))
    g = p.add_argument_group("generators (GAN dissection: the probe images are the model's "
                             "own samples, labelled by a segmenter)")
    g.add_argument("--segmenter",
                   help=adapter_help("segmenter", "segmenter spec NAME:TARGET; instead of "
                                     "--dataset"))
    g.add_argument("--samples", type=int, default=1000, help="samples z ~ N(0, I) to dissect")
    g.add_argument("--seed", type=int, default=0, help="seed of the samples (sample i is a "
                                                       "function of seed and i)")
    g.add_argument("--latent-shape", metavar="N[,H,W]",
                   help="the generator's latent shape, e.g. 100,1,1 (default: the adapter's)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--normalize", help="imagenet, netdissect, none, or R,G,B/R,G,B (0-255)")
    p.add_argument("--resize", help="resize images to N or HxW before the model")
    p.add_argument("--thresholds", action="append", metavar="LAYER=FILE.npy",
                   help="use given per-unit thresholds for a layer (repeatable)")
    p.add_argument("--layout", action="append", metavar="LAYER=LAYOUT",
                   help="how LAYER's output is laid out: nchw, nhwc (channels last), "
                        "tokens[:skip=K][:grid=HxW] ([B, N, C], K leading non-spatial tokens) "
                        "or vector ([B, C]: whole-image masks); overrides the model's "
                        "(repeatable; `ndcore layers` shows each layer's)")
    add_run_options(p)
    p.set_defaults(func=cmd_dissect)
