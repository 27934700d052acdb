"""End-to-end fixtures: a small Broden-format dataset, a model file for ``python:``, running
``python -m ndcore`` (or torchrun) as a user would, and comparing two runs bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from broden_fixture import write_broden

CATS = ["object", "part", "scene"]
LABELS = [(1, "disc", {"object": 1.0}), (2, "edge", {"object": 0.3, "part": 0.5}),
          (3, "spot", {"part": 1.0}), (4, "field", {"scene": 1.0}), (5, "sky", {"scene": 1.0})]


def write_dataset(root: Path, n_images: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        obj = np.where(rng.random((8, 8)) < 0.3, rng.choice([1, 2], size=(8, 8)), 0)
        part = np.where(rng.random((8, 8)) < 0.3, rng.choice([2, 3], size=(8, 8)), 0)
        spec = {"image": img, "planes": {"object": [obj]}, "label_size": (8, 8),
                "image_labels": {"scene": [int(rng.choice([4, 5]))]}}
        if rng.random() < 0.5:
            spec["planes"]["part"] = [part]
        images.append(spec)
    return write_broden(root, CATS, LABELS, images)


MODEL_SOURCE = '''
import time
import torch
from torch import nn

SLOW_FORWARD = {slow_forward!r}  # seconds per forward call
SLOW_LABELS = {slow_labels!r}    # seconds per labels-only read (pass 2 from kept maps)


class Slow(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if SLOW_FORWARD:
            time.sleep(SLOW_FORWARD)
        return self.inner(x)


def build():
    if SLOW_LABELS:
        from ndcore.data.broden import BrodenDataset
        read = BrodenDataset.read

        def slow_read(self, index, image=True, labels=True):
            if labels and not image:
                time.sleep(SLOW_LABELS)
            return read(self, index, image=image, labels=labels)

        BrodenDataset.read = slow_read
    torch.manual_seed(0)
    return Slow(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU(),
                              nn.Conv2d(6, 5, 3, padding=1)))
'''


def write_model(path: Path, slow_forward: float = 0.0, slow_labels: float = 0.0) -> Path:
    path.write_text(MODEL_SOURCE.format(slow_forward=slow_forward, slow_labels=slow_labels))
    return path


def dissect_args(model: Path, data: Path, out: Path, *extra: str) -> List[str]:
    return ["dissect", "--model", f"python:{model}:build", "--layers", "inner.1,inner.3,inner.4",
            "--dataset", f"broden:{data}", "--out", str(out), "--workers", "0",
            "--batch-size", "4", "--quiet", "--no-report", "--quantile", "0.05", *extra]


def env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                    e.get("PYTHONPATH", "")]))
    e.pop("WORLD_SIZE", None)
    e.update(extra or {})
    return e


def ndcore(args: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ndcore", *args], capture_output=True,
                          text=True, env=env(), timeout=600, **kw)


def start_ndcore(args: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ndcore", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(),
                            start_new_session=True)


def torchrun_cmd(nproc: int, args: Sequence[str], port: int) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
            "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "ndcore", *args]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_results(a: Path, b: Path, layers=("inner.1", "inner.3", "inner.4")) -> None:
    """Thresholds bit for bit, tally.csv and summary.json byte for byte, raw counts, top-k and
    the resamples' counts equal."""
    for layer in layers:
        ta = np.load(a / layer / "thresholds.npy")
        tb = np.load(b / layer / "thresholds.npy")
        assert ta.tobytes() == tb.tobytes(), f"{layer}: thresholds differ"
        assert (a / layer / "tally.csv").read_bytes() == (b / layer / "tally.csv").read_bytes(), \
            f"{layer}: tally.csv differs"
        # the null's and the bootstrap's counts (on by default) and what they give
        assert (a / layer / "resamples.npz").is_file() == (b / layer / "resamples.npz").is_file()
        saved = [n for n in ("counts.npz", "topk.npz", "resamples.npz", "chance.npz")
                 if (a / layer / n).is_file()]
        assert (a / layer / "summary.json").read_bytes() == \
            (b / layer / "summary.json").read_bytes(), f"{layer}: summary.json differs"
        for name in saved:
            with np.load(a / layer / name) as za, np.load(b / layer / name) as zb:
                assert sorted(za.files) == sorted(zb.files)
                for key in za.files:
                    assert np.array_equal(za[key], zb[key]), f"{layer}/{name}: {key} differs"
