"""The command line end to end on the synthetic dataset."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return dict(os.environ, NDCORE_CACHE=str(cache), COLUMNS="200")


def ndcore(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ndcore", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def run_dir(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv3,conv5", "--dataset",
                 "synthetic:80", "--out", str(out), "--workers", "0", "--batch-size", "16",
                 "--quiet", "--no-report")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Interpretability per layer" in res.stdout
    assert "detectors (FDR 5%)" in res.stdout and "stable" in res.stdout  # chance, confidence
    return out


def test_dissect_writes_everything(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["complete"] is True
    assert cfg["model"]["spec"] == "demo" and len(cfg["model"]["weights_sha256"]) == 64
    assert cfg["dataset"]["spec"] == "synthetic:size=80,seed=0" and cfg["dataset"]["images"] == 80
    assert cfg["options"]["union"] == "paper" and cfg["options"]["quantile"] == 0.005
    assert cfg["versions"]["torch"]
    for layer, units in (("conv3", 128), ("conv5", 128)):
        rows = list(csv.DictReader(open(run_dir / layer / "tally.csv")))
        assert len(rows) == units
        assert np.load(run_dir / layer / "thresholds.npy").shape == (units,)
        summary = json.loads((run_dir / layer / "summary.json").read_text())
        assert summary["summary"]["units"] == units
    assert json.loads((run_dir / "summary.json").read_text())["conv5"]["layer"] == "conv5"


def test_summary_and_relabel(run_dir, env):
    res = ndcore(env, "summary", str(run_dir), "--top", "3")
    assert res.returncode == 0 and "conv5" in res.stdout
    res = ndcore(env, "summary", str(run_dir), "--cutoff", "0.99", "--write")
    assert res.returncode == 0
    rows = list(csv.DictReader(open(run_dir / "conv5" / "tally.csv")))
    assert json.loads((run_dir / "conv5" / "summary.json").read_text())["summary"]["detectors"] == 0
    assert len(rows) == 128
    res = ndcore(env, "summary", str(run_dir), "--categories", "color,object", "--write")
    assert res.returncode == 0
    header = next(csv.reader(open(run_dir / "conv5" / "tally.csv")))
    assert header[4:] == [f"{c}-{k}" for c in ("object", "color")
                          for k in ("label", "truth", "activation", "intersect", "iou")]


def test_given_thresholds_reproduce_the_run(run_dir, env, tmp_path):
    out = tmp_path / "again"
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv5", "--dataset", "synthetic:80",
                 "--out", str(out), "--workers", "0", "--quiet", "--no-report",
                 "--thresholds", f"conv5={run_dir / 'conv5' / 'thresholds.npy'}")
    assert res.returncode == 0, res.stdout + res.stderr
    with np.load(run_dir / "conv5" / "counts.npz") as a, np.load(out / "conv5" / "counts.npz") as b:
        np.testing.assert_array_equal(a["intersection"], b["intersection"])


def test_errors_are_one_line(env, tmp_path):
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv9", "--dataset", "synthetic:80",
                 "--out", str(tmp_path / "x"), "--quiet")
    assert res.returncode == 2
    assert "layer 'conv9' not found" in res.stdout and "did you mean" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    res = ndcore(env, "dissect", "--model", "torchvision:resnet18", "--layers", "layer4",
                 "--dataset", "synthetic:80", "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "--random-init" in res.stdout
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv5", "--dataset",
                 f"broden:{tmp_path / 'missing'}", "--out", str(tmp_path / "z"))
    assert res.returncode == 2 and "dataset directory not found" in res.stdout


def test_layers_and_info(env):
    res = ndcore(env, "layers", "demo")
    assert res.returncode == 0 and "conv5" in res.stdout and "[1, 128, 14, 14]" in res.stdout
    res = ndcore(env, "info")
    assert res.returncode == 0 and "ndcore._C" in res.stdout and "torch" in res.stdout


def test_demo_command(env, tmp_path):
    res = ndcore(env, "demo", "--size", "60", "--out", str(tmp_path / "demo"), "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    assert (tmp_path / "demo" / "conv5" / "tally.csv").is_file()


def test_dissect_with_rotated_layers(env, tmp_path):
    """--rotate: derived layers LAYER@rot<alpha> with rotation.npy, in summary.json, the report
    and compare (the rotation chart)."""
    out = tmp_path / "rot"
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv5", "--dataset",
                 "synthetic:40", "--out", str(out), "--workers", "0", "--batch-size", "20",
                 "--quiet", "--rotate", "conv5", "--rotate-alpha", "0,0.5,1",
                 "--rotate-seed", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    cfg = json.loads((out / "config.json").read_text())
    derived = ["conv5@rot0", "conv5@rot0.5", "conv5@rot1"]
    assert cfg["layers"] == ["conv5", *derived]
    assert cfg["options"]["rotate"] == ["conv5"] and cfg["options"]["rotate_alpha"] == [0, 0.5, 1]
    summary = json.loads((out / "summary.json").read_text())
    for layer in derived:
        rotation = np.load(out / layer / "rotation.npy")
        assert rotation.shape == (128, 128) and rotation.dtype == np.float64
        assert summary[layer]["layer"] == layer
    np.testing.assert_array_equal(np.load(out / "conv5@rot0" / "rotation.npy"), np.eye(128))
    assert (np.load(out / "conv5@rot0" / "thresholds.npy").tobytes()
            == np.load(out / "conv5" / "thresholds.npy").tobytes())
    index = (out / "report" / "index.html").read_text()
    assert "Random rotation" in index and "detectors against alpha" in index
    res = ndcore(env, "compare", str(out), "--out", str(tmp_path / "c.svg"))
    assert res.returncode == 0, res.stdout + res.stderr
    chart = (tmp_path / "c-rotation.svg").read_text()
    assert "conv5 alpha 0.5:" in chart and "unique detectors" in chart
    assert "rotation chart written" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--rotate", "conv9"], "--rotate conv9: layer 'conv9' not found"),
    (["--rotate", "conv5", "--rotate-alpha", "0,2"], "--rotate-alpha 2.0: each alpha must lie"),
    (["--rotate", "conv5", "--rotate-alpha", "0,x"], "--rotate-alpha '0,x': expected numbers"),
])
def test_rotate_errors_are_one_line(env, tmp_path, args, message):
    res = ndcore(env, "dissect", "--model", "demo", "--layers", "conv5", "--dataset",
                 "synthetic:40", "--out", str(tmp_path / "x"), "--quiet", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout.replace("\n", " ")
    assert "Traceback" not in res.stdout + res.stderr
