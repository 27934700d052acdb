"""Errors that ndcore reports to users as one clear message (never a deep traceback)."""

from __future__ import annotations

import difflib
from typing import Iterable


class NdcoreError(Exception):
    """Base class: the CLI prints these as a single 'error: ...' line and exits with 2."""


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
