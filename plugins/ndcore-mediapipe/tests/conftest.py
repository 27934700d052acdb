"""Fixtures: the real DCGAN's samples (ndcore's dcgan-faces adapter) and one face-parts
segmenter (one worker) for the whole session.

The tests that need the worker environment fail, rather than skip, when it is missing:
``make test-mediapipe`` creates it first, and a silent skip would hide a broken plugin.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
SEED = 0


def dcgan_images(indices, seed=SEED):
    """uint8 [B, 3, 64, 64]: the DCGAN's samples ``indices``, as ndcore dissects them."""
    import ndcore.api
    from ndcore.gan.generator import GeneratorInfo, to_images
    from ndcore.gan.latents import latents

    adapter = ndcore.api.resolve_model("dcgan-faces")
    z = latents(list(indices), (100, 1, 1), seed)
    with torch.no_grad():
        out = adapter.module.eval()(z)
    return to_images(out, GeneratorInfo((100, 1, 1)), "dcgan-faces")


@pytest.fixture(scope="session")
def faces64():
    """The first 64 samples of seed 0 (GAN-NOTES: 62 of them have a face mediapipe finds)."""
    return dcgan_images(range(64))


@pytest.fixture(scope="session")
def segmenter():
    from ndcore_mediapipe import FacePartsSegmenter

    seg = FacePartsSegmenter()
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def segmented(segmenter, faces64):
    return segmenter.segment(faces64)


def alive(pid):
    """True while process ``pid`` exists (a zombie counts: it was not waited for)."""
    return Path(f"/proc/{pid}").exists()


def worker_pids(tag):
    """Processes whose environment holds NDCORE_MEDIAPIPE_TEST_TAG=tag (our workers)."""
    needle = f"NDCORE_MEDIAPIPE_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def run_ndcore(args, env=None, timeout=900):
    """``python -m ndcore ARGS`` as a user runs it; returns the CompletedProcess."""
    full = dict(os.environ, **(env or {}), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "ndcore", *args], capture_output=True,
                          text=True, env=full, timeout=timeout)
