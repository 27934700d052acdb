"""Puts a whole synthetic set in place atomically, and caches one per parameter set."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

from .writer import GENERATOR_VERSION, ProgressFn, _write_dataset

STAMP_NAME = "ndcore_synthetic.json"


def _params(size: int, seed: int, image_size: int, label_size: int) -> dict:
    return {
        "generator": "ndcore.data.synthetic",
        "version": GENERATOR_VERSION,
        "size": int(size),
        "seed": int(seed),
        "image_size": int(image_size),
        "label_size": int(label_size),
    }


def _read_stamp(path: Path) -> Optional[dict]:
    try:
        return json.loads((path / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def generate(out_dir, size: int = 1000, seed: int = 0, image_size: int = 112,
             label_size: int = 56, progress: Optional[ProgressFn] = None) -> Path:
    """Write a synthetic Broden-format dataset to ``out_dir`` and return its path.

    The dataset is written to a temporary sibling directory and moved into place at the end, so
    an interrupted run never leaves a half-written dataset. An existing non-empty ``out_dir`` is
    accepted only if it holds a complete generation with the same parameters (it is returned as
    is); otherwise ``FileExistsError``. ``progress(done, total)`` is called after each image.
    """
    if size < 1 or image_size < 8 or not 1 <= label_size <= image_size:
        raise ValueError(f"bad sizes: size={size}, image_size={image_size}, "
                         f"label_size={label_size}")
    out = Path(out_dir)
    params = _params(size, seed, image_size, label_size)
    if out.exists() and any(out.iterdir()):
        if _read_stamp(out) == params:
            return out
        raise FileExistsError(f"{out} exists and is not a synthetic dataset with these parameters")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_dataset(tmp, size, seed, image_size, label_size, progress)
        (tmp / STAMP_NAME).write_text(json.dumps(params, indent=1) + "\n")  # written last
        try:
            os.replace(tmp, out)  # atomic; replaces an empty directory too
        except OSError:
            if _read_stamp(out) != params:  # not a concurrent identical generation
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_cache_dir() -> Path:
    """synthetic/ in ndcore's cache: ``$NDCORE_CACHE``, else ``$XDG_CACHE_HOME/ndcore``, else
    ``~/.cache/ndcore`` (the rule the op's first-use build follows too: ops.jit.cache_home)."""
    from ...ops.jit import cache_home  # here: loading the op is no business of `import ndcore.data`

    return cache_home() / "synthetic"


def ensure_synthetic(size: int = 1000, seed: int = 0, image_size: int = 112,
                     label_size: int = 56, cache_dir=None,
                     progress: Optional[ProgressFn] = None) -> Path:
    """Path of a cached synthetic dataset with these parameters, generated only when missing."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"v{GENERATOR_VERSION}_n{size}_s{seed}_i{image_size}_l{label_size}"
    if _read_stamp(path) == _params(size, seed, image_size, label_size):
        return path
    return generate(path, size, seed, image_size, label_size, progress)
