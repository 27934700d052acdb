"""``<layer>/formulas.json``: each unit's best formula, written atomically, read back for the
report.

    {"header": {"layer", "length", "search", "beam", "categories", "labels", "images",
                "units", "seconds", "ndcore_version", "union"},
     "units": [{"unit", "formula", "iou", "length", "optimal", "visited"}, ...]}

Units are 0-based and sorted. A later run of ``ndcore formulas`` with the same settings
(length, search, beam, categories) on other units adds them to the file; other settings
replace it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import OutputError
from ..results import layer_dir

FILE = "formulas.json"
UNIT_KEYS = ("unit", "formula", "iou", "length", "optimal", "visited")
# header keys that make two files' formulas comparable (and so mergeable)
SETTINGS = ("length", "search", "beam", "categories", "images")


def formulas_path(run_dir, layer: str) -> Path:
    return layer_dir(Path(run_dir), layer) / FILE


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
        old = read_formulas(run_dir, layer)
    except OutputError:
        old = None  # an unreadable file is replaced
    if old is not None and all(old["header"].get(k) == header.get(k) for k in SETTINGS):
        rows = {**{r["unit"]: r for r in old["units"]}, **rows}
    data = {"header": dict(header, units=len(rows)),
            "units": [rows[u] for u in sorted(rows)]}
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
