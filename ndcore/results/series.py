"""A series of dissections: several models (checkpoints of one training, or different
architectures) dissected over one pass of the probe data, and read back in order.

``ndcore dissect --weights A.pt --weights B.pt ... --out DIR`` writes one run directory per
member under ``DIR`` and the series summary ``DIR/series.json``:

    {"kind": "ndcore-series", "version": 1, "ndcore_version": ...,
     "x_label": "iteration" | "order" | a name given with --x-label,
     "complete": true once every member is,
     "members": [{"name": "iter_1000", "run": "iter_1000", "model": SPEC, "weights": PATH,
                  "layers": [...], "x": 1000, "complete": true}, ...]}

``name`` is the member's run directory (relative to ``DIR``); ``x`` its place on the series'
x-axis: the training iteration read from the weights' file names, values given with ``--x``,
or the member's position.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import NdcoreError, OutputError
from ..files import replace_atomically
from ..version import __version__

SERIES_FILE = "series.json"
KIND = "ndcore-series"
VERSION = 1

_NUMBER = re.compile(r"\d+")
_SPEC = re.compile(r"[A-Za-z_][\w.-]*:.*|[A-Za-z_][\w.-]*")  # a model spec, NAME[:TARGET]
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass
class SeriesMember:
    """One model of a series, and where its run directory is (``run``, relative to the series'
    directory)."""

    name: str
    model: str
    weights: Optional[str]
    layers: List[str]
    x: float
    complete: bool = False

    @property
    def run(self) -> str:
        return self.name


@dataclass
class Series:
    """A series' summary (``series.json``), its members in order."""

    directory: Path
    members: List[SeriesMember]
    x_label: str = "order"
    complete: bool = False

    def run_dirs(self) -> List[Path]:
        return [self.directory / m.run for m in self.members]

    def xs(self) -> List[float]:
        return [m.x for m in self.members]

    def to_json(self) -> Dict[str, Any]:
        members = [dict(asdict(m), run=m.run) for m in self.members]
        return {"kind": KIND, "version": VERSION, "ndcore_version": __version__,
                "x_label": self.x_label, "complete": self.complete, "members": members}

    def write(self) -> None:
        """``series.json``, replaced atomically."""
        body = json.dumps(self.to_json(), indent=1)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            replace_atomically(self.directory / SERIES_FILE, lambda tmp: tmp.write_text(body))
        except OSError as e:
            raise OutputError(f"{self.directory / SERIES_FILE}: cannot write "
                              f"({e.strerror or e})") from None


def is_series(directory: Path) -> bool:
    return (Path(directory) / SERIES_FILE).is_file()


def read_series(directory: Path) -> Series:
    """The series in ``directory`` (its ``series.json``); one-line errors for what is wrong."""
    path = Path(directory) / SERIES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputError(f"{directory}: no {SERIES_FILE} (not a series written by "
                          "`ndcore dissect --weights A --weights B ...`)") from None
    except (OSError, ValueError) as e:
        raise OutputError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise OutputError(f"{path}: not an ndcore series summary")
    try:
        members = [SeriesMember(name=str(m["name"]), model=str(m["model"]),
                                weights=m.get("weights"), layers=list(m["layers"]),
                                x=float(m["x"]), complete=bool(m.get("complete", False)))
                   for m in data["members"]]
    except (KeyError, TypeError, ValueError) as e:
        raise OutputError(f"{path}: a member is malformed ({e})") from None
    return Series(Path(directory), members, str(data.get("x_label", "order")),
                  bool(data.get("complete", False)))


# -- names and the x-axis ------------------------------------------------------------------


def member_names(labels: Sequence[str]) -> List[str]:
    """Run directory names for members labelled by ``labels`` (weights paths or model specs):
    the file's stem (``ckpt/iter_1000.pt`` -> ``iter_1000``), with parent folders joined in
    front (``a-final``, ``b-final``) until the names are distinct; a label given twice is
    refused (the two runs would be one)."""
    seen = set()
    for label in labels:
        if label in seen:
            raise NdcoreError(f"{label}: given twice in the series")
        seen.add(label)
    paths = [_label_parts(label) for label in labels]
    for depth in range(1, max(len(p) for p in paths) + 1):
        names = [_safe("-".join(p[-depth:])) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{i:02d}-{_safe('-'.join(p))}" for i, p in enumerate(paths)]


def _label_parts(label: str) -> List[str]:
    """The parts of a weights path (its stem last), or of a model spec (``NAME:TARGET``)."""
    path = Path(label)
    if _SPEC.fullmatch(label) and not path.exists():  # NAME:TARGET: its target's parts
        return [Path(p).stem for p in re.split(r"[:/]", label) if p] or [label]
    return [p for p in path.parent.parts if p not in ("/", ".", "..")] + [path.stem]


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "member"


def iteration_of(label: str) -> Optional[int]:
    """The training iteration in a weights file's name: its stem's last number
    (``iter_1000.pt`` -> 1000, ``ckpt-epoch3-step0500.pth`` -> 500); None without one."""
    numbers = _NUMBER.findall(Path(label).stem)
    return int(numbers[-1]) if numbers else None


def series_x(labels: Sequence[str], given: Optional[Sequence[float]] = None,
             given_label: Optional[str] = None) -> tuple:
    """(x values, x label) of a series: ``given`` (one per member), else the iterations read
    from the file names when every member has a distinct one, else the order (0, 1, ...)."""
    if given is not None:
        if len(given) != len(labels):
            raise NdcoreError(f"--x: {len(given)} values for {len(labels)} members of the series")
        return finite_x(given), given_label or "x"
    found = [iteration_of(label) for label in labels]
    if len(labels) > 1 and all(v is not None for v in found) and len(set(found)) == len(found):
        return [float(v) for v in found], given_label or "iteration"
    return [float(i) for i in range(len(labels))], given_label or "order"


def finite_x(values: Sequence[float]) -> List[float]:
    """``values`` as x-axis positions: finite numbers (a NaN or infinity has no place on the
    axis, and would make series.json invalid JSON)."""
    out = [float(v) for v in values]
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise NdcoreError(f"--x {bad[0]}: x values must be finite numbers")
    return out
