"""The ``ndcore`` command line (also ``python -m ndcore``, e.g. under torchrun).

Each subcommand lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import warnings
from typing import List, Optional

from ..errors import NdcoreError
from . import demo, dissect, inspect, layers, summary
from .console import console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndcore", description="Network Dissection, fast.")
    parser.add_argument("--log-file", help="also write log messages and warnings to this file")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (dissect, summary, layers, inspect, demo):
        module.register(sub)
    from ..report.commands import register_commands  # report, compare, explain

    register_commands(sub)
    return parser


def _setup_logging(log_file: Optional[str]) -> None:
    if not log_file:
        return
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def _terminate(signum, frame):
    # SIGTERM (e.g. a batch scheduler, or torchrun stopping the other ranks) unwinds like
    # Ctrl-C, so that `finally` blocks remove scratch files and close the process group.
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_file)
    warnings.simplefilter("default")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
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
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
