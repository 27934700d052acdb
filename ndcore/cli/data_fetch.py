"""``ndcore data fetch broden``: download the Broden release, verified, into a directory."""

from __future__ import annotations

from .console import console, err_console


def cmd_fetch(args) -> int:
    from ..data.probesets.fetch import fetch_broden  # on use: building the parser stays fast

    def notify(line: str) -> None:
        if not args.quiet:
            err_console.print(f"[yellow]mirror failed:[/yellow] {line}", highlight=False,
                              soft_wrap=True)

    root = fetch_broden(args.resolution, args.dir, mirrors=args.mirror, quiet=args.quiet,
                        notify=notify)
    console.print(f"Broden ready: {root} (dissect with --dataset broden:{root})",
                  highlight=False, soft_wrap=True)
    return 0


def register(group) -> None:
    p = group.add_parser("fetch", help="download a probe set release (Broden), verified and "
                                       "resumable")
    p.add_argument("name", choices=["broden"], help="the probe set to fetch")
    p.add_argument("--resolution", type=int, choices=[224, 227], default=224,
                   help="image size of the release: 224 (ResNet, VGG) or 227 (AlexNet, CaffeNet)")
    p.add_argument("--dir", required=True,
                   help="parent directory: the dataset lands in DIR/broden1_<resolution>")
    p.add_argument("--mirror", action="append", metavar="URL",
                   help="URL of the archive (…/broden1_224.zip) or of a folder holding it; "
                        "repeat to try several in order (replaces the built-in list)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fetch)
