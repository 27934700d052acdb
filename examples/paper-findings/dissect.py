"""Dissecting one comparison of the study as an ndcore series: one run directory per member and
``series.json`` (``ndcore.api.run_series``: every member over one pass of the probe data).

A series' directory carries ``study-key.json``, a hash of what it was made from (members'
models and weights files' hashes, layers, dataset, options), written when it is complete: a
rerun of the study reads a matching series back and redoes any other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ndcore.api import run_series
from ndcore.files import replace_atomically
from ndcore.models import sha256_of
from ndcore.results import DissectionResult
from ndcore.results.series import Series, is_series, read_series

STAMP = "study-key.json"


@dataclass(frozen=True)
class Member:
    """One model of a comparison: its spec and weights file (named as the member's run)."""

    model: str
    weights: Path


def series_key(members: Sequence[Member], layers: Sequence[str], dataset: str,
               x: Optional[Sequence[float]], x_label: Optional[str],
               options: Dict[str, Any]) -> str:
    body = {"members": [[m.model, Path(m.weights).name, sha256_of(m.weights)] for m in members],
            "layers": list(layers), "dataset": dataset, "x": list(x) if x else None,
            "x_label": x_label, "options": options}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def is_done(out: Path, key: str) -> bool:
    stamp = Path(out) / STAMP
    if not stamp.is_file() or not is_series(out):
        return False
    try:
        same = json.loads(stamp.read_text()).get("key") == key
    except ValueError:
        return False
    return same and read_series(out).complete


def dissect_series(out: Path, members: Sequence[Member], layers: Sequence[str], dataset: str,
                   x: Optional[Sequence[float]] = None, x_label: Optional[str] = None,
                   quiet: bool = True, **options: Any) -> Dict[str, Any]:
    """Dissect ``members`` (each on ``layers``) into the series ``out``, unless a matching
    one is there; returns ``{"seconds": ..., "reused": bool}`` (the seconds the dissection took,
    when it was made)."""
    out = Path(out)
    key = series_key(members, layers, dataset, x, x_label, options)
    if is_done(out, key):  # the seconds it took when it was made
        return {"seconds": json.loads((out / STAMP).read_text()).get("seconds"), "reused": True}
    if out.exists():  # another study's series (other weights or settings): redone whole
        shutil.rmtree(out)
    t0 = time.time()
    models = [m.model for m in members]
    run_series(models if len(set(models)) > 1 else models[0], list(layers), dataset, out,
               weights=[str(m.weights) for m in members], x=x, x_label=x_label, quiet=quiet,
               **options)
    seconds = round(time.time() - t0, 1)
    replace_atomically(out / STAMP, lambda tmp: tmp.write_text(
        json.dumps({"key": key, "seconds": seconds}, indent=1)))
    return {"seconds": seconds, "reused": False}


def load_series(out: Path) -> List[Dict[str, Any]]:
    """Each member of the series in ``out``, in order: its name, x, model, weights and the
    per-layer summaries of its run (``DissectionResult.summary()``)."""
    series: Series = read_series(out)
    return [{"name": m.name, "x": m.x, "model": m.model, "weights": m.weights,
             "layers": DissectionResult.load(run).summary()}
            for m, run in zip(series.members, series.run_dirs())]
