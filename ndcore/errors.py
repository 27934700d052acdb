"""Errors that ndcore reports to users as one clear message (never a deep traceback)."""

from __future__ import annotations

import difflib
import os
import re
import traceback
from typing import Iterable


class NdcoreError(Exception):
    """Base class: the CLI prints these as a single 'error: ...' line and exits with 2.

    ``details`` (optional) is printed after the traceback under ``ndcore --traceback``, e.g.
    the tracebacks of the plugins that failed when an adapter cannot be found.
    """

    details: str = ""


class DatasetError(NdcoreError):
    """A probe dataset is missing, malformed or inconsistent (the message names the file)."""


class LayerError(NdcoreError):
    """A requested layer does not exist or does not produce a 4-D [N, C, H, W] map."""


class ActivationError(NdcoreError):
    """A layer produced NaN or Inf activations (the message names the layer and the units)."""


class PluginError(NdcoreError):
    """An adapter spec names no registered adapter, or an adapter failed to build."""


class OutputError(NdcoreError):
    """The output directory holds a different run, or cannot be written."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the choices closest to ``name``, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


# -- one-line reports of errors raised by code ndcore does not own (plugins, torch) ----------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def env_flag(name: str) -> bool:
    """Whether the switch ``name`` is on: set to anything but "", "0", "false", "no" or "off".
    The same rule as ndcore.ops.build_config.env_flag (same floor: neither may import the other;
    tests/test_jit_build.py checks they agree)."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def debug_enabled() -> bool:
    """True under ``ndcore --traceback`` or ``NDCORE_DEBUG=1``: show full tracebacks."""
    return env_flag("NDCORE_DEBUG")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """'TypeError: first line of the message', without terminal colour codes."""
    text = _ANSI.sub("", str(exc)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def traceback_text(exc: BaseException) -> str:
    """The full traceback of ``exc`` (with its causes), as Python prints it."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


TRACEBACK_HINT = "--traceback shows where"
