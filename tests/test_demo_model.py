"""The shipped demo model: the committed weights load and clearly beat chance on fresh images."""

from __future__ import annotations

import pytest
import torch

from ndcore.demo.model import (
    DEMO_MEAN,
    DEMO_STD,
    LAYER_NAMES,
    TASKS,
    WEIGHTS_PATH,
    DemoNet,
    build_demo_model,
    preprocess,
)
from ndcore.demo.train import evaluate, render_task_data

# Seed of neither the training (1234), validation (4321) nor default probe (0) images.
FRESH_SEED = 777


@pytest.fixture(scope="module")
def model() -> DemoNet:
    if not WEIGHTS_PATH.exists():
        pytest.fail(f"{WEIGHTS_PATH} missing: run python -m ndcore.demo.train")
    return build_demo_model()


def test_weights_match_architecture(model):
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    expected = DemoNet().state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert state[key].shape == value.shape, key
        if value.is_floating_point():
            assert state[key].dtype == torch.float32, key
    assert WEIGHTS_PATH.stat().st_size < 2_000_000
    assert not model.training


def test_layers_are_named_modules(model):
    modules = dict(model.named_modules())
    x = preprocess(torch.zeros(2, 112, 112, 3, dtype=torch.uint8).numpy())
    shapes = {}
    hooks = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape))) for n in LAYER_NAMES]
    try:
        with torch.no_grad():
            assert model(x).shape == (2, sum(len(v) for v in TASKS.values()))
    finally:
        for h in hooks:
            h.remove()
    assert shapes == {"conv1": (2, 32, 56, 56), "conv2": (2, 64, 28, 28),
                      "conv3": (2, 128, 28, 28), "conv4": (2, 128, 14, 14),
                      "conv5": (2, 128, 14, 14)}


def test_preprocess_normalises_with_demo_statistics():
    img = torch.full((4, 4, 3), 255, dtype=torch.uint8).numpy()
    x = preprocess(img)
    assert x.shape == (1, 3, 4, 4)
    expected = [(1 - m) / s for m, s in zip(DEMO_MEAN, DEMO_STD)]
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected))


def test_untrained_model_builds():
    assert isinstance(build_demo_model(pretrained=False), DemoNet)


def test_beats_chance_on_fresh_images(model):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = render_task_data(100, FRESH_SEED)
    acc = evaluate(model, data)
    assert len(TASKS["scene"]) >= 20
    assert acc["scene"] > 0.8  # chance: 1/24
    assert acc["object"] > 0.75  # per-label presence; always-"absent" scores about 0.55
    assert acc["color"] > 0.8  # the majority answer per label scores about 0.75
