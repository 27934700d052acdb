"""``<layer>/formulas.json``: each unit's best formula, written atomically, read back for the
report.

    {"header": {"layer", "length", "search", "beam", "categories", "labels", "images",
                "units", "seconds", "mask_seconds", "search_seconds", "ndcore_version",
                "union"},
     "units": [{"unit", "formula", "iou", "length", "optimal", "visited"}, ...]}

Units are 0-based and sorted. A later run of ``ndcore formulas`` with the same settings
(length, search, categories, images, and the beam width under ``--search beam`` only) on other
units adds them to the file; other settings replace it. The merge holds a lock (a hidden sibling
``.lock`` file), so runs on one layer at once with different ``--units`` all keep their units.
``units`` counts the file's units; the other header fields (``labels``, the ``*seconds`` and
``ndcore_version``) describe the last call that wrote the file.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from ..errors import OutputError
from ..files import replace_atomically
from ..results import layer_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no lock there
    fcntl = None

FILE = "formulas.json"
UNIT_KEYS = ("unit", "formula", "iou", "length", "optimal", "visited")
# header keys that make two files' formulas comparable (and so mergeable); "beam" only counts
# under the beam search (the optimal search ignores it)
SETTINGS = ("length", "search", "categories", "images")


def formulas_path(run_dir, layer: str) -> Path:
    return layer_dir(Path(run_dir), layer) / FILE


def _settings(header: Dict) -> tuple:
    keys = SETTINGS + (("beam",) if header.get("search") == "beam" else ())
    return tuple((k, header.get(k)) for k in keys)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s sibling lock file (blocking): one read-merge-write
    at a time."""
    if fcntl is None:
        yield
        return
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _unit_row(result) -> Dict:
    row = {k: getattr(result, k) for k in UNIT_KEYS} if not isinstance(result, dict) else \
        {k: result[k] for k in UNIT_KEYS}
    return {"unit": int(row["unit"]), "formula": str(row["formula"]), "iou": float(row["iou"]),
            "length": int(row["length"]), "optimal": bool(row["optimal"]),
            "visited": int(row["visited"])}


def write_formulas(run_dir, layer: str, header: Dict, results: Sequence) -> Path:
    """Write (or extend, see above) the layer's formulas.json; returns its path. The file is
    written under a temporary name and renamed, so an interruption never leaves half a file."""
    path = formulas_path(run_dir, layer)
    rows = {r["unit"]: r for r in map(_unit_row, results)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            try:
                old = read_formulas(run_dir, layer)
            except OutputError:
                old = None  # an unreadable file is replaced
            if old is not None and _settings(old["header"]) == _settings(header):
                rows = {**{r["unit"]: r for r in old["units"]}, **rows}
            data = {"header": dict(header, units=len(rows)),
                    "units": [rows[u] for u in sorted(rows)]}
            replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e})") from None
    return path


def read_formulas(run_dir, layer: str) -> Optional[Dict]:
    """The layer's formulas.json ({"header", "units"}), or None when it has none."""
    path = formulas_path(run_dir, layer)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        units: List[Dict] = [_unit_row(u) for u in data["units"]]
        header = dict(data["header"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    return {"header": header, "units": units}


def formulas_by_unit(run_dir, layer: str) -> Dict[int, Dict]:
    """{unit: its row} of the layer's formulas.json ({} when it has none)."""
    data = read_formulas(run_dir, layer)
    return {} if data is None else {u["unit"]: u for u in data["units"]}
