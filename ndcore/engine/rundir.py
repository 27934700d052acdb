"""The output directory of a run: start, resume, refuse or replace; config.json.

- a new or empty directory: a new run;
- the same run (same fingerprint: model, weights, layers, dataset, result options), not
  complete: resumed from its checkpoint (or started again when it has none);
- the same run, complete: left as it is (``complete`` is set; the caller loads it), or
  computed again with ``--overwrite``;
- a different run: refused, with the way out (``--overwrite``), which replaces it;
- anything else (a file, a folder of other things, no permission): refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import OutputError
from ..files import replace_atomically
from . import checkpoint
from .options import RESULT_OPTIONS, ROTATE_OPTIONS


def fingerprint(config: Dict) -> Dict:
    """What makes two runs the same run (labelling options and speed settings left out)."""
    opts = {k: config["options"].get(k) for k in RESULT_OPTIONS}
    if not opts.get("rotate"):  # as before the rotation options existed
        for k in ROTATE_OPTIONS:
            opts.pop(k)
    # as config.json reads back (tuples as lists), so that a fresh config equals a saved one
    # random_init follows from the weights (weights_sha256 tells such runs apart); left out so
    # that a run begun before it was recorded still resumes
    model = {k: v for k, v in config["model"].items() if k != "random_init"}
    return json.loads(json.dumps({"model": model, "layers": config["layers"],
                                  "dataset": config["dataset"], "options": opts}))


def fingerprint_hash(config: Dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint(config), sort_keys=True).encode()).hexdigest()


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return f"{path}: {a!r} there, {b!r} now" if path else "configuration"


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Set by prepare(): the directory holds this very run, finished (and was not touched).
        self.complete = False

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def prepare(self, config: Dict, overwrite: bool = False) -> Optional[Dict]:
        """Make the directory ready; returns the checkpoint state to resume from, or None.

        A finished run with the same fingerprint is left alone (``self.complete`` is set):
        recomputing it would give the same thresholds and counts."""
        p = self.path
        self.complete = False
        if p.exists() and not p.is_dir():
            raise OutputError(f"--out {p}: is a file, not a directory")
        old = self._read_old_config()
        if old is not None:
            same = old != "unreadable" and fingerprint(old) == fingerprint(config)
            if not same and not overwrite:
                why = "its config.json is unreadable" if old == "unreadable" else \
                    f"it differs in {_first_difference(fingerprint(old), fingerprint(config))}"
                what = "a different run" if old == "unreadable" or old.get("complete") else \
                    "a different, unfinished run"
                raise OutputError(f"--out {p}: holds {what} ({why}); choose another "
                                  "--out, or give --overwrite to replace it")
            if same and not overwrite and old.get("complete"):
                self.complete = True
                return None
            if not same or overwrite or old.get("complete"):
                self._clear()
                self._start(config)
                return None
            try:
                state = checkpoint.load(p)
            except ValueError as e:
                state = None
                warnings.warn(f"{e}; starting the run again")
            if state is not None and state.get("fingerprint") != fingerprint_hash(config):
                state = None
            if state is None:  # kept maps without a state that covers them are of no use
                checkpoint.remove(p)
            self.write_config(config, complete=False)
            return state
        if p.exists() and any(p.iterdir()):
            raise OutputError(f"--out {p}: exists, is not empty and holds no ndcore run; "
                              "choose another --out (--overwrite only replaces ndcore runs)")
        self._start(config)
        return None

    def _read_old_config(self):
        if not self.config_path.is_file():
            return None
        try:
            old = json.loads(self.config_path.read_text())
            fingerprint(old)
            return old
        except (ValueError, KeyError, TypeError, OSError):
            return "unreadable"

    def _clear(self) -> None:
        """Remove what an ndcore run wrote here (the directory is known to hold one)."""
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _start(self, config: Dict) -> None:
        """A new run: no checkpoint, config.json marked incomplete."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            checkpoint.remove(self.path)
            self.write_config(config, complete=False)
        except OSError as e:
            raise OutputError(f"--out {self.path}: cannot write ({e.strerror or e})") from None

    def write_config(self, config: Dict, complete: bool) -> None:
        body = json.dumps(dict(config, complete=complete), indent=1)
        replace_atomically(self.config_path, lambda tmp: tmp.write_text(body))
