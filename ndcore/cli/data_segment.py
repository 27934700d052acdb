"""``ndcore data segment IMAGES_DIR --segmenter SEG --out PROBE_DIR``: label a folder of images
with a segmenter and write a Broden-format probe set (resumable)."""

from __future__ import annotations

import argparse

from ..errors import NdcoreError
from .adapter_help import AdapterHelpFormatter, add_adapter_option
from .args import parse_size
from .console import console


def cmd_segment(args: argparse.Namespace) -> int:
    from ..data.probesets.segment import segment_folder
    from ..specs import resolve_segmenter

    if args.workers < 0:
        raise NdcoreError(f"--workers {args.workers}: must be >= 0")
    resize = parse_size(args.resize, "--resize")
    segmenter, spec = resolve_segmenter(args.segmenter)
    try:
        summary = segment_folder(args.images_dir, segmenter, spec, args.out, resize=resize,
                                 workers=args.workers, build=_build_segmenter,
                                 progress=not args.quiet)
    finally:
        segmenter.close()
    console.print(f"{summary.images} images ({summary.written} new), categories "
                  f"{', '.join(summary.categories)}: [bold]{summary.out}[/bold]")
    console.print(f"dissect with: --dataset broden:{summary.out}")
    return 0


def _build_segmenter(spec: str):
    """A worker process's own segmenter (picklable: named by module and name)."""
    from ..specs import resolve_segmenter

    return resolve_segmenter(spec)[0]


def register(group) -> None:
    p = group.add_parser(
        "segment", formatter_class=AdapterHelpFormatter,
        help="label a folder of images with a segmenter into a Broden-format probe set",
        description="Label every JPEG/PNG under IMAGES_DIR (recursively) with a segmenter and "
                    "write a Broden-format probe set to --out. Rerunning continues where it "
                    "stopped. Then: ndcore dissect --dataset broden:PROBE_DIR ...")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of JPEG/PNG images")
    add_adapter_option(p, "--segmenter", "segmenter", required=True,
                       help="segmenter spec NAME[:TARGET]")
    p.add_argument("--out", required=True, metavar="PROBE_DIR", help="probe set directory")
    p.add_argument("--resize", metavar="N|HxW",
                   help="resize images before labelling (stored resized, as PNG); default: "
                        "images are labelled and copied as they are")
    p.add_argument("--workers", type=int, default=0,
                   help="label in N processes, each with its own segmenter (default 0: in "
                        "this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_segment)
