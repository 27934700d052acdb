"""``ndcore data convert FORMAT``, ``ndcore data merge`` and ``ndcore data info``: probe sets
from other segmentation formats, several probe sets as one, and what a probe set holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich import box
from rich.markup import escape
from rich.table import Table

from ..conventions import DEFAULT_CUTOFF
from ..engine.options import DissectOptions  # the one place of the dissection's defaults
from ..errors import OutputError
from ..files import replace_atomically
from .args import parse_size
from .console import console, err_console


def _sizing(args: argparse.Namespace):
    from ..data.probesets.convert_common import Sizing

    return Sizing(parse_size(args.size, "--size"), parse_size(args.label_size, "--label-size"))


def _done(report, out: str, verb: str) -> int:
    if len(report.label_sizes) > 1:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(report.label_sizes)[:4])
        more = len(report.label_sizes) - 4
        err_console.print(
            f"[yellow]warning:[/yellow] label planes of {len(report.label_sizes)} sizes "
            f"({sizes}{f', and {more} more' if more > 0 else ''}); a dissection batches one "
            "label size: convert with --size N --label-size M (Broden: 224, 112)",
            highlight=False, soft_wrap=True)
    parts = [f"{report.written} image(s) {verb}"]
    if report.resumed:
        parts.append(f"{report.resumed} already there")
    if report.skipped:
        parts.append(f"{report.skipped} without a mask left out")
    console.print(f"{escape(out)}: {', '.join(parts)} (dissect with --dataset "
                  f"broden:{escape(out)}; `ndcore data info {escape(out)}` tells what it holds)",
                  highlight=False, soft_wrap=True)
    return 0


def cmd_index_png(args: argparse.Namespace) -> int:
    from ..data.probesets.convert_index_png import convert_index_png

    report = convert_index_png(
        Path(args.images), Path(args.masks), Path(args.labels), Path(args.out),
        category=args.category, ignore=args.ignore or (), image_suffix=args.image_suffix,
        mask_suffix=args.mask_suffix, skip_missing=args.skip_missing, sizing=_sizing(args),
        source=args.source, progress=not args.quiet)
    return _done(report, args.out, "converted")


def cmd_coco(args: argparse.Namespace) -> int:
    from ..data.probesets.convert_coco import convert_coco_panoptic

    report = convert_coco_panoptic(
        Path(args.images), Path(args.panoptic_json), Path(args.panoptic_masks), Path(args.out),
        stuff_category=args.stuff_category, sizing=_sizing(args), source=args.source,
        progress=not args.quiet)
    return _done(report, args.out, "converted")


def cmd_merge(args: argparse.Namespace) -> int:
    from ..data.probesets.merge import merge_probe_sets

    report = merge_probe_sets([Path(p) for p in args.sets], Path(args.out), prefix=args.prefix,
                              progress=not args.quiet)
    return _done(report, args.out, "merged")


def _sizes(counts, shown: int = 3) -> str:
    """'224x224 (900), 112x112 (100)': the most common sizes, then how many others."""
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} ({v})" for k, v in common[:shown])
    return text + (f" and {len(common) - shown} other sizes" if len(common) > shown else "")


def _write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=1) + "\n"
    try:
        replace_atomically(path, lambda tmp: tmp.write_text(text))
    except OSError as e:
        raise OutputError(f"{path}: cannot write the --json file ({e.strerror or e})") from None


def cmd_info(args: argparse.Namespace) -> int:
    from ..data.probesets.info import probe_set_info

    info = probe_set_info(Path(args.probe_set), quantile=args.quantile, cutoff=args.cutoff,
                          min_images=args.min_images, progress=not args.quiet)
    if args.json:
        _write_json(Path(args.json), info.to_json())
    console.print(f"{escape(info.root)}: {info.images} images; image sizes "
                  f"{_sizes(info.image_sizes)}; label planes {_sizes(info.label_sizes)}",
                  highlight=False, soft_wrap=True)
    if len(info.label_sizes) > 1:
        console.print("label planes of several sizes: a dissection batches one label size "
                      "(convert with --size and --label-size)", highlight=False)
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("category", "images annotated", "labels", "pixel coverage"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for cat in info.categories:
        table.add_row(escape(cat.name), str(cat.images), str(cat.labels),
                      f"{100 * cat.coverage:.1f}%")
    console.print(table)
    rare = info.rare
    console.print(
        f"{len(rare)} of {len(info.labels)} labels too rare for a meaningful IoU (at most "
        f"IoU {info.cutoff:g} for a unit that fires on the top {info.quantile:g} of the "
        f"pixels, or in fewer than {info.min_images} images)"
        + (":" if rare else ""), highlight=False, soft_wrap=True)
    if rare:
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("label", "categories", "pixels", "images", "IoU at most", "why"):
            table.add_column(column, justify="right" if column in ("pixels", "images",
                                                                    "IoU at most") else "left")
        shown = sorted(rare, key=lambda l: (l.pixels, l.number))[: args.top]
        for label in shown:
            table.add_row(escape(label.name), escape(",".join(label.categories)),
                          str(label.pixels), str(label.images), f"{label.iou_bound:.3g}",
                          escape(label.rare))
        console.print(table)
        if len(rare) > len(shown):
            console.print(f"... and {len(rare) - len(shown)} more (--top N shows more, --json "
                          "FILE writes them all)", highlight=False)
    return 0


def _common(p: argparse.ArgumentParser, source: str) -> None:
    p.add_argument("--size", metavar="N|HxW",
                   help="resize the images to this (bilinear; saved as JPEG); default: copy them")
    p.add_argument("--label-size", metavar="N|HxW",
                   help="resize the label planes to this (nearest neighbour); default: --size, "
                        "else each mask's own. A dissection needs one label size: give these "
                        "when the images vary in size (Broden: --size 224 --label-size 112)")
    p.add_argument("--out", required=True, metavar="PROBE_DIR",
                   help="the probe set to write (a new or empty directory, or one this command "
                        "started: rerunning continues it)")
    p.add_argument("--source", default=source,
                   help=f"folder of the images under PROBE_DIR/images/ (default {source})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(group) -> None:
    convert = group.add_parser(
        "convert", help="convert a segmentation dataset (index masks, COCO panoptic) to a "
                        "Broden-format probe set")
    formats = convert.add_subparsers(dest="format", required=True, metavar="FORMAT")

    p = formats.add_parser(
        "index-png", help="a mask PNG per image whose values index labels.txt (Pascal VOC, "
                          "Cityscapes, ADE20K scene parsing)",
        description="Each image under --images (JPEG/PNG, recursive) has a mask PNG at the "
                    "same relative path under --masks, same stem. A mask pixel's value v (palette "
                    "index, 8- or 16-bit grey) names line v of labels.txt; line 0 and empty lines "
                    "are no label. The label plane keeps the mask's resolution (Broden's sh, sw); "
                    "a mask of another aspect ratio than its image is an error.")
    p.add_argument("--images", required=True, metavar="DIR")
    p.add_argument("--masks", required=True, metavar="DIR")
    p.add_argument("--labels", required=True, metavar="labels.txt",
                   help="one label name a line; line 0 is the background (no label)")
    p.add_argument("--category", default="object",
                   help="the category of every label (default object)")
    p.add_argument("--ignore", type=int, action="append", metavar="V",
                   help="a mask value left unlabelled (VOC's borders: 255); repeatable")
    p.add_argument("--image-suffix", default="", metavar="S",
                   help="cut from the image's stem to find its mask (Cityscapes: _leftImg8bit)")
    p.add_argument("--mask-suffix", default="", metavar="S",
                   help="added to the mask's stem (Cityscapes: _gtFine_labelIds)")
    p.add_argument("--skip-missing", action="store_true",
                   help="leave out images without a mask (else: an error)")
    _common(p, "index-png")
    p.set_defaults(func=cmd_index_png)

    p = formats.add_parser(
        "coco-panoptic", help="COCO's panoptic format (things -> object; stuff -> object, or "
                              "--stuff-category)",
        description="COCO panoptic: PNGs of segment ids (R + 256*G + 256^2*B, 0 = void) and a "
                    "JSON with segments_info and categories (isthing). Things become labels of "
                    "category object; stuff too by default, as Broden files ADE20K's sky, wall "
                    "and floor under object. Crowd segments are labelled like the others.")
    p.add_argument("--images", required=True, metavar="DIR")
    p.add_argument("--panoptic-json", required=True, metavar="FILE")
    p.add_argument("--panoptic-masks", required=True, metavar="DIR")
    p.add_argument("--stuff-category", default="object", metavar="CAT",
                   help="category of the stuff labels (default object; e.g. material keeps "
                        "them apart in a plane of their own)")
    _common(p, "coco-panoptic")
    p.set_defaults(func=cmd_coco)

    p = group.add_parser(
        "merge", help="merge several probe sets into one (labels of one name merged)",
        description="The images of every set, the union of their categories and labels: labels "
                    "of one name become one label that keeps all its categories. An image key "
                    "(path under images/ without extension) in two sets is refused, unless "
                    "--prefix puts each set's images under its directory's name.")
    p.add_argument("sets", nargs="+", metavar="PROBE_DIR", help="Broden-format probe sets")
    p.add_argument("--out", required=True, metavar="PROBE_DIR",
                   help="the merged probe set (rerunning continues it)")
    p.add_argument("--prefix", action="store_true",
                   help="key each set's images by its directory name (when keys collide)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_merge)

    quantile = DissectOptions.__dataclass_fields__["quantile"].default
    p = group.add_parser(
        "info", help="images, labels per category, pixel coverage, labels too rare for IoU",
        description="A label is too rare for a meaningful IoU when even a perfect match could "
                    "not make a detector: a unit fires on about the top QUANTILE of the pixels "
                    "of the images annotated in the label's categories (A pixels), IoU is at "
                    "most min(A, G) / max(A, G) for a label of G pixels, and that must exceed "
                    "CUTOFF; or when it appears in fewer than MIN_IMAGES images.")
    p.add_argument("probe_set", metavar="PROBE_DIR")
    p.add_argument("--quantile", type=float, default=quantile,
                   help=f"the dissection's top quantile (default {quantile:g})")
    p.add_argument("--cutoff", type=float, default=DEFAULT_CUTOFF,
                   help=f"IoU a detector exceeds (default {DEFAULT_CUTOFF:g})")
    p.add_argument("--min-images", type=int, default=10,
                   help="fewer images than this makes a label rare (default 10)")
    p.add_argument("--top", type=int, default=20, help="rare labels listed (default 20)")
    p.add_argument("--json", metavar="FILE", help="write every number as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_info)
