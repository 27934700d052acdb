"""``ndcore summary``: print (or relabel) a saved run; say how far an unfinished run got."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..conventions import UNIONS
from ..errors import OutputError
from ..results.series import is_series
from .args import csv_list
from .console import console


def describe_incomplete(run: Path, state: Path = None, what_ran: str = "run") -> str:
    """One line on how far an unfinished run (or series) got, from its checkpoint in
    ``state`` (default: the run's own directory), if any."""
    from ..engine import checkpoint

    progress = checkpoint.read_progress(state or run)
    if progress is None:
        return (f"{run}: the {what_ran} did not finish and wrote no checkpoint; run the same "
                "`ndcore dissect` command again to start it over")
    passes = progress.get("passes", 2)
    what = "single pass" if passes == 1 else f"pass {progress['phase']} of {passes}"
    if progress["phase"] == 2 and progress.get("batches_done", 0) == 0:
        what = "pass 1 of 2 done, pass 2 not started"
    ago = time.time() - float(progress.get("saved_at", time.time()))
    return (f"{run}: the {what_ran} did not finish: {what}, {progress['images_done']} of "
            f"{progress['images']} images done at the last checkpoint ({ago / 60:.0f} min ago, "
            f"{progress.get('world_size', 1)} process(es)); run the same `ndcore dissect` "
            "command again to continue from it")


def cmd_summary(args: argparse.Namespace) -> int:
    from ..report.common import check_fdr
    from ..results import DissectionResult
    from .tables import print_summary

    run = Path(args.run)
    if is_series(run):
        return _summary_of_series(run, args)
    config = run / "config.json"
    if config.is_file():
        try:
            complete = json.loads(config.read_text()).get("complete", False)
        except ValueError:
            complete = True  # let the loader report the broken file
        if not complete:
            raise OutputError(describe_incomplete(run))
    check_fdr(args.fdr)
    result = DissectionResult.load(args.run, union=args.union, cutoff=args.cutoff,
                                   categories=csv_list(args.categories), fdr=args.fdr)
    print_summary(result, top=args.top)
    if args.write:
        result.write_labels()
        console.print(f"relabelled tally.csv and summaries written to {args.run}")
    return 0


def _summary_of_series(directory: Path, args: argparse.Namespace) -> int:
    """Every member of a series (``series.json``), or how far an unfinished series got."""
    from ..engine.series import STATE_DIR, SeriesResult
    from ..report.common import check_fdr
    from ..results import DissectionResult
    from ..results.series import read_series
    from .tables import print_series

    series = read_series(directory)
    if not series.complete:
        done = [m.name for m in series.members if m.complete]
        line = describe_incomplete(directory, directory / STATE_DIR, what_ran="series")
        raise OutputError(f"{line} ({len(done)} of {len(series.members)} members complete"
                          f"{': ' + ', '.join(done) if done else ''})")
    check_fdr(args.fdr)
    results = [DissectionResult.load(d, union=args.union, cutoff=args.cutoff,
                                     categories=csv_list(args.categories), fdr=args.fdr)
               for d in series.run_dirs()]
    print_series(SeriesResult(series, results))
    if args.write:
        for result in results:
            result.write_labels()
        console.print(f"relabelled tally.csv and summaries of {len(results)} members written")
    return 0


def register(sub) -> None:
    p = sub.add_parser("summary", help="print (or relabel) a saved run")
    p.add_argument("run")
    p.add_argument("--union", choices=UNIONS)
    p.add_argument("--cutoff", type=float)
    p.add_argument("--categories")
    p.add_argument("--fdr", type=float, metavar="Q",
                   help="false discovery rate of the significant detectors (default: the run's)")
    p.add_argument("--top", type=int, default=2, help="best units shown per category and layer")
    p.add_argument("--write", action="store_true", help="rewrite tally.csv with these settings")
    p.set_defaults(func=cmd_summary)
