"""``ndcore demo``: dissect the demo CNN on the built-in synthetic dataset."""

from __future__ import annotations


def cmd_demo(args) -> int:
    from ..demo.run import run_demo

    run_demo(out=args.out, size=args.size, quiet=args.quiet, workers=args.workers,
             report=not args.no_report)
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="dissect the demo CNN on the built-in synthetic dataset")
    p.add_argument("--out", default="ndcore-demo", help="output directory")
    p.add_argument("--size", type=int, default=1000, help="images in the synthetic probe set")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(func=cmd_demo)
