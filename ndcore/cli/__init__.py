"""The ``ndcore`` command line (also ``python -m ndcore``, e.g. under torchrun).

Each subcommand lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, TextIO, Type, Union

from rich.markup import escape

from ..errors import TRACEBACK_HINT, NdcoreError, debug_enabled, one_line, traceback_text
from . import data, demo, dissect, formulas, inspect, intervene, layers, paint, report, summary
from .console import console, err_console

_PACKAGE = Path(__file__).resolve().parent.parent  # ndcore/: whose warnings are "ours"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndcore", description="Network Dissection, fast.")
    parser.add_argument("--log-file", help="also write log messages and warnings to this file")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (dissect, intervene, paint, summary, layers, inspect, demo, report, formulas,
                   data):
        module.register(sub)
    return parser


def _setup_logging(log_file: Optional[str]) -> None:
    if not log_file:
        return
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def _is_ndcore_file(filename: str) -> bool:
    """A module of ndcore or of its built-in plugins (``ndcore_builtins``)."""
    try:
        path = Path(filename).resolve()
        return path.is_relative_to(_PACKAGE) or "ndcore_builtins" in path.parts
    except (OSError, ValueError):
        return False


class _StatusLines(logging.Handler):
    """The run's status records (``ndcore.run``: resumed, already complete) as plain lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err_console.print(escape(self.format(record)), highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _plain_messages(log_file: bool) -> Iterator[None]:
    """For one command: ndcore's own warnings as one line ``warning: MESSAGE`` on stderr (not
    Python's ``path:line: UserWarning: ...`` with a source line), and the run's status lines.
    Other libraries' warnings keep Python's format; the Python API is left alone."""
    previous_show = warnings.showwarning  # logging's, with --log-file: it writes the file

    def show(message: Union[Warning, str], category: Type[Warning], filename: str,
             lineno: int, file: Optional[TextIO] = None, line: Optional[str] = None) -> None:
        if not _is_ndcore_file(filename):
            previous_show(message, category, filename, lineno, file, line)
            return
        text = " ".join(str(message).split())  # one line, whatever the message holds
        err_console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False,
                          soft_wrap=True)
        if log_file:
            previous_show(message, category, filename, lineno, file, line)

    status = logging.getLogger("ndcore.run")
    handler, level = _StatusLines(logging.INFO), status.level
    status.addHandler(handler)
    status.setLevel(logging.INFO)
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous_show
        status.removeHandler(handler)
        status.setLevel(level)


def _terminate(signum, frame):
    # SIGTERM (e.g. a batch scheduler, or torchrun stopping the other ranks) unwinds like
    # Ctrl-C, so that `finally` blocks remove scratch files and close the process group.
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; errors are one line (exit 2), full tracebacks with ``--traceback``.

    ``--traceback`` may stand anywhere on the command line (``NDCORE_DEBUG=1`` does the same):
    it adds the full traceback to every error, including a plugin's. Ctrl-C, while the command
    runs or while it loads its plugins, prints ``interrupted`` (exit 130).
    """
    as_program = argv is None  # run as the program (not called from Python)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if as_program and threading.current_thread() is threading.main_thread():
            # the process ends now: a second Ctrl-C must not break its teardown (loader
            # workers, atexit handlers) into a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print("[red]interrupted[/red]")
        return 130


def _main(argv: Optional[List[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--traceback" in argv[:cut]
    argv = [a for i, a in enumerate(argv) if i >= cut or a != "--traceback"]
    previous_debug = os.environ.get("NDCORE_DEBUG")
    if debug:
        os.environ["NDCORE_DEBUG"] = "1"  # DataLoader workers and plugins see it too
    debug = debug_enabled()
    parser = build_parser()
    parser.add_argument("--traceback", action="store_true",
                        help="show full tracebacks, also of plugins (or set NDCORE_DEBUG=1)")
    args = parser.parse_args(argv)
    _setup_logging(args.log_file)
    warnings.simplefilter("default")
    # ...but not the unclosed sockets and files a Ctrl-C leaves to the garbage collector (the
    # loader workers' connections): a user who pressed Ctrl-C sees "interrupted" alone
    warnings.simplefilter("ignore", ResourceWarning)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None

    def report(e: BaseException, message: str) -> None:
        if debug:
            print(traceback_text(e), file=sys.stderr, end="")
        # soft_wrap: the message stays one line when the output is not a terminal
        console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False,
                      soft_wrap=True)
        if args.log_file:
            logging.getLogger("ndcore").error(message)

    try:
        with _plain_messages(bool(args.log_file)):
            return args.func(args)
    except NdcoreError as e:
        report(e, str(e))
        if debug and e.details:
            print(e.details, file=sys.stderr)
        return 2
    except Exception as e:  # a bug, in ndcore or in a plugin: one line, the rest on request
        if getattr(e, "one_line_message", False):  # no bug: e.g. the op cannot compile here
            report(e, str(e))
            return 2
        report(e, f"{one_line(e)} (an unexpected error; {TRACEBACK_HINT})")
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if previous_debug is None:
            os.environ.pop("NDCORE_DEBUG", None)
        else:
            os.environ["NDCORE_DEBUG"] = previous_debug


if __name__ == "__main__":
    sys.exit(main())
