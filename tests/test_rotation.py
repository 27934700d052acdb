"""Random rotation of a layer's units (docs/method.md section 13): the rotation's math against
oracles written from its definition, and derived layers against a model that rotates its own
layer."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ndcore
from ndcore.api import run_dissection
from ndcore.capture.rotation import (derived_name, fractional_power, haar_rotation,
                                     parse_derived, powers, rotations)
from ndcore.data.broden import BrodenDataset
from ndcore.engine import DissectOptions
from ndcore.errors import NdcoreError
from ndcore.models import ModelAdapter, Preprocess
from broden_fixture import write_broden
from test_planted import CATS, LABELS, make_images


# -- the math ------------------------------------------------------------------------------

def rot2(theta):
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def block_rotation(angles, fixed=0):
    """blockdiag(rot(theta_1), ..., 1, ...) : a rotation with known angles."""
    n = 2 * len(angles) + fixed
    out = np.eye(n)
    for k, theta in enumerate(angles):
        out[2 * k:2 * k + 2, 2 * k:2 * k + 2] = rot2(theta)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 8, 65, 256])
def test_haar_rotation_is_a_rotation(n):
    q = haar_rotation(n, seed=3)
    assert q.dtype == np.float64 and q.shape == (n, n)
    np.testing.assert_allclose(q @ q.T, np.eye(n), atol=1e-12)
    assert abs(np.linalg.det(q) - 1) < 1e-10


def test_haar_rotation_is_seeded():
    assert np.array_equal(haar_rotation(40, 7), haar_rotation(40, 7))
    assert not np.allclose(haar_rotation(40, 7), haar_rotation(40, 8))
    a = rotations(40, [0.3, 1.0], 7)
    b = rotations(40, [0.3, 1.0], 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_haar_rotation_follows_netdissect_construction():
    """QR of the seeded Gaussian, columns times sign(diag R), first row negated if det < 0."""
    g = np.random.default_rng(11).standard_normal((9, 9))
    q, r = np.linalg.qr(g)
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[0] *= -1
    np.testing.assert_array_equal(haar_rotation(9, 11), q)


@pytest.mark.parametrize("n", [2, 7, 64, 200])
def test_fractional_powers(n):
    q = haar_rotation(n, seed=n)
    assert np.array_equal(fractional_power(q, 0), np.eye(n))  # exactly
    np.testing.assert_allclose(fractional_power(q, 1), q, rtol=0, atol=1e-12)
    for a, b in [(0.25, 0.5), (0.3, 0.7), (0.1, 0.15)]:
        qa, qb, qab = powers(q, [a, b, a + b])
        np.testing.assert_allclose(qa @ qb, qab, rtol=0, atol=1e-12)
        np.testing.assert_allclose(qa @ qa.T, np.eye(n), rtol=0, atol=1e-12)
        assert abs(np.linalg.det(qa) - 1) < 1e-10
    half = fractional_power(q, 0.5)
    np.testing.assert_allclose(half @ half, q, rtol=0, atol=1e-12)


def test_fractional_power_of_known_angles():
    """In a random basis W, a rotation with known angles: its power is rot(alpha theta)."""
    # (no angle pi: its powers are not unique; see the next test)
    angles = [0.3, -1.2, 2.9, -3.1, 0.3, 1e-3]
    t = block_rotation(angles, fixed=3)
    w = haar_rotation(t.shape[0], seed=5)
    q = w @ t @ w.T
    for alpha in (0.0, 0.2, 0.5, 1.0):
        expected = w @ block_rotation([alpha * th for th in angles], fixed=3) @ w.T
        np.testing.assert_allclose(fractional_power(q, alpha), expected, rtol=0, atol=1e-12)


def test_eigenvalues_minus_one_pair_into_half_turns():
    q = np.diag([-1.0, 1.0, -1.0, -1.0, -1.0])
    half = fractional_power(q, 0.5)
    np.testing.assert_allclose(half @ half, q, atol=1e-12)
    np.testing.assert_allclose(half @ half.T, np.eye(5), atol=1e-12)
    assert half[1, 1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd number"):
        fractional_power(np.diag([-1.0, 1.0, 1.0]), 0.5)


def test_identity_powers_are_identity():
    for n in (1, 4):
        np.testing.assert_allclose(fractional_power(np.eye(n), 0.37), np.eye(n), atol=1e-15)


def test_derived_names():
    assert derived_name("layer4", 0.5) == "layer4@rot0.5"
    assert derived_name("layer4", 0) == "layer4@rot0"
    assert derived_name("a.b", 1.0) == "a.b@rot1"
    assert parse_derived("a.b@rot0.25") == ("a.b", 0.25)
    assert parse_derived("layer4") is None


# -- options -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(rotate=["x"], rotate_alpha=[0.5, 1.5]), "--rotate-alpha 1.5"),
    (dict(rotate=["x"], rotate_alpha=[-0.1]), "--rotate-alpha -0.1"),
    (dict(rotate=["x"], rotate_alpha=[]), "--rotate-alpha"),
    (dict(rotate=["x"], rotate_alpha=[0.5, 0.5]), "given twice"),
    (dict(rotate=["x", "x"]), "twice"),
    (dict(rotate=["x@rot0.5"]), "derived"),
    (dict(rotate=["x"], rotate_seed=-1), "--rotate-seed"),
])
def test_rotation_options_are_checked(kwargs, message):
    with pytest.raises(NdcoreError, match=message):
        DissectOptions(**kwargs)


# -- the engine: derived layers ------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_broden(tmp_path_factory.mktemp("rot"), CATS, LABELS, make_images(40, seed=5))


def base_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU())


class Rotated(nn.Module):
    """The oracle: a model that applies a given R to layer "3"'s output, by its own code."""

    def __init__(self, base, rotation):
        super().__init__()
        self.base = base
        self.register_buffer("rotation", torch.as_tensor(rotation, dtype=torch.float32))
        self.out = nn.Identity()

    def forward(self, x):
        maps = self.base(x)
        b, c, h, w = maps.shape  # R @ maps over the channel axis, at every position (float32)
        return self.out((self.rotation @ maps.reshape(b, c, h * w)).reshape(b, c, h, w))


def assert_same_layer(a, b, exact=True):
    if exact:
        np.testing.assert_array_equal(a.thresholds, b.thresholds)
    else:
        np.testing.assert_allclose(a.thresholds, b.thresholds, rtol=1e-5, atol=1e-6)
    for key in ("intersection", "truth", "act_lite", "area_by_pattern"):
        np.testing.assert_array_equal(a.counts[key], b.counts[key], err_msg=key)


def test_derived_layers_equal_a_model_that_rotates_its_layer(dataset, tmp_path):
    alphas = [0, 0.5, 1]
    out = tmp_path / "run"
    result = run_dissection(ModelAdapter("cnn", base_cnn(), Preprocess()), ["3"],
                            BrodenDataset(dataset), out, batch_size=7, rotate=["3"],
                            rotate_alpha=alphas, rotate_seed=4)
    names = [derived_name("3", a) for a in alphas]
    assert list(result.layers) == ["3"] + names
    plain = result.layers["3"]
    # alpha 0: the layer itself, bit for bit
    assert_same_layer(result.layers["3@rot0"], plain)
    for alpha, name in zip(alphas, names):
        saved = np.load(out / name / "rotation.npy")
        assert saved.dtype == np.float64 and saved.shape == (5, 5)
        np.testing.assert_array_equal(saved, rotations(5, [alpha], 4)[0])
        if alpha == 0:
            continue
        oracle = run_dissection(ModelAdapter("rot", Rotated(base_cnn(), saved), Preprocess()),
                                ["out"], BrodenDataset(dataset), batch_size=7)
        assert_same_layer(result.layers[name], oracle.layers["out"])
    assert not np.array_equal(result.layers["3@rot1"].thresholds, plain.thresholds)
    # the saved run reads back with its derived layers
    from ndcore import load_result
    loaded = load_result(out)
    assert set(names) <= set(loaded.layers)


def test_derived_layer_without_its_source(dataset):
    """--rotate of a layer that is not in --layers: its maps are captured, not dissected."""
    result = run_dissection(ModelAdapter("cnn", base_cnn(), Preprocess()), ["1"],
                            BrodenDataset(dataset), batch_size=8, rotate=["3"],
                            rotate_alpha=[0.0])
    both = run_dissection(ModelAdapter("cnn", base_cnn(), Preprocess()), ["1", "3"],
                          BrodenDataset(dataset), batch_size=8)
    assert list(result.layers) == ["1", "3@rot0"]
    assert_same_layer(result.layers["3@rot0"], both.layers["3"])
    assert_same_layer(result.layers["1"], both.layers["1"])


def test_rotate_of_an_unknown_layer_is_one_line(dataset):
    with pytest.raises(NdcoreError, match="--rotate nope: layer 'nope' not found"):
        run_dissection(ModelAdapter("cnn", base_cnn(), Preprocess()), ["1"],
                       BrodenDataset(dataset), rotate=["nope"])


# -- resume and processes: a derived layer is any layer -------------------------------------

ROTATE = ("--rotate", "inner.3", "--rotate-alpha", "0,0.5,1", "--rotate-seed", "2")
ROTATED_LAYERS = ("inner.1", "inner.3", "inner.4", "inner.3@rot0", "inner.3@rot0.5",
                  "inner.3@rot1")


@pytest.fixture(scope="module")
def rotated_reference(tmp_path_factory):
    from run_fixture import dissect_args, ndcore, write_dataset, write_model

    root = tmp_path_factory.mktemp("rotrun")
    data = write_dataset(root / "data", n_images=42)
    reference = root / "reference"
    done = ndcore(dissect_args(write_model(root / "fast.py"), data, reference, *ROTATE))
    assert done.returncode == 0, done.stderr
    return root, data, reference


def assert_same_rotated(a, b):
    from run_fixture import assert_same_results

    assert_same_results(a, b, layers=ROTATED_LAYERS)
    for layer in ROTATED_LAYERS[3:]:
        assert (a / layer / "rotation.npy").read_bytes() == (b / layer / "rotation.npy").read_bytes()


@pytest.mark.slow
def test_rotated_run_killed_and_resumed_gives_the_same_results(rotated_reference, tmp_path):
    from run_fixture import dissect_args, ndcore, start_ndcore, write_model
    from test_resume import kill_when

    root, data, reference = rotated_reference
    out = tmp_path / "run"
    args = dissect_args(write_model(tmp_path / "slow.py", 0.0, 0.15), data, out,
                        "--checkpoint-every", "0.01", *ROTATE)
    kill_when(start_ndcore(args), out, phase=2, min_batches=2)
    again = ndcore(args)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "config.json").read_text())["run"]["resumed"]
    assert_same_rotated(reference, out)


@pytest.mark.slow
def test_rotated_run_on_two_gloo_processes_equals_one(rotated_reference, tmp_path):
    import subprocess

    from run_fixture import dissect_args, env, free_port, torchrun_cmd, write_model

    root, data, reference = rotated_reference
    out = tmp_path / "run"
    args = dissect_args(write_model(tmp_path / "model.py"), data, out, *ROTATE)
    done = subprocess.run(torchrun_cmd(2, args, free_port()), capture_output=True, text=True,
                          env=env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["run"]["world_size"] == 2
    assert_same_rotated(reference, out)


def test_runs_without_rotation_keep_their_fingerprint():
    from dataclasses import asdict

    from ndcore.engine.rundir import fingerprint

    config = {"model": {}, "layers": ["a"], "dataset": {}, "options": asdict(DissectOptions())}
    old = dict(config, options={k: v for k, v in config["options"].items()
                                if not k.startswith("rotate")})
    assert fingerprint(config) == fingerprint(old)
    rotated = dict(config, options=asdict(DissectOptions(rotate=["a"])))
    assert fingerprint(rotated) != fingerprint(config)
    reseeded = dict(config, options=asdict(DissectOptions(rotate=["a"], rotate_seed=1)))
    assert fingerprint(rotated) != fingerprint(reseeded)


def test_a_generator_layer_rotates_like_a_dataset_layer(tmp_path):
    """Generator runs go through the same rotating stage: alpha 0 is the layer itself bit for
    bit, alpha 1 a rotation of it (rotation.npy written, thresholds changed)."""
    planted = f"python:{Path(__file__).resolve().parent / 'planted_generator.py'}:build"
    result = ndcore.dissect_generator(planted, ["units"], "colors", tmp_path / "g", samples=120,
                                      seed=1, rotate=["units"], rotate_alpha=(0, 1))
    assert set(result.layers) == {"units", "units@rot0", "units@rot1"}
    plain, same, turned = (result[l] for l in ("units", "units@rot0", "units@rot1"))
    assert np.array_equal(plain.thresholds, same.thresholds)
    assert all(np.array_equal(plain.counts[k], same.counts[k]) for k in plain.counts)
    rotation = np.load(tmp_path / "g" / "units@rot1" / "rotation.npy")
    assert rotation.shape == (len(plain.thresholds),) * 2
    assert np.allclose(rotation @ rotation.T, np.eye(len(rotation)), atol=1e-12)
    assert not np.array_equal(plain.thresholds, turned.thresholds)  # premise: it did rotate
