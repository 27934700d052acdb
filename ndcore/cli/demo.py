"""``ndcore demo``: dissect the demo CNN on the built-in synthetic dataset, end to end."""

from __future__ import annotations

from pathlib import Path

from ..progress import progress_bar
from .console import console
from .tables import print_summary

DEMO_LAYERS = ("conv2", "conv3", "conv4", "conv5")


def build_dataset(size: int, quiet: bool = False) -> Path:
    """Generate (or reuse the cached) synthetic probe set, with a progress bar."""
    from ..data.synthetic import ensure_synthetic  # on use: building the parser stays fast

    with progress_bar(not quiet) as bar:
        task = bar.add_task(f"synthetic dataset ({size} images)", total=size)
        root = ensure_synthetic(size=size, seed=0,
                                progress=lambda done, total: bar.update(task, completed=done))
        bar.update(task, completed=size)  # also when it came from the cache
        return root


def run_demo(out: str = "ndcore-demo", size: int = 1000, quiet: bool = False, workers: int = 2,
             report: bool = True):
    from ..api import run_dissection

    root = build_dataset(size, quiet)
    if not quiet:
        console.print(f"probe dataset: [bold]{root}[/bold]")
    result = run_dissection("demo", list(DEMO_LAYERS), f"synthetic:size={size}", out,
                            quiet=quiet, workers=workers, batch_size=50)
    print_summary(result)
    if report:
        from ..report.html import write_report

        index = write_report(out, progress=not quiet)
        console.print(f"report: [bold]{Path(index).resolve()}[/bold]")
    console.print(f"results: [bold]{Path(out).resolve()}[/bold] (tally.csv per layer, "
                  f"`ndcore summary {out}`)")
    return result


def cmd_demo(args) -> int:
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
