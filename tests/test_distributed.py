"""torchrun with 2 gloo processes on the loopback gives results identical to one process, also
when the distributed run is killed and resumed (with 2 processes, or with 1)."""

import json
import subprocess
from pathlib import Path

import pytest

from run_fixture import (assert_same_results, dissect_args, env, free_port, ndcore,
                         torchrun_cmd, write_dataset, write_model)
from test_resume import kill_when

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data = write_dataset(root / "data", n_images=42)  # 11 batches of 4: ranks get 6 and 5
    reference = root / "reference"
    model = write_model(root / "model.py")
    done = ndcore(dissect_args(model, data, reference))
    assert done.returncode == 0, done.stderr
    return root, data, model, reference


def torchrun(nproc, args, **kw):
    return subprocess.run(torchrun_cmd(nproc, args, free_port()), capture_output=True,
                          text=True, env=env(), timeout=600, **kw)


@pytest.mark.parametrize("second_pass", ["cache", "forward"])
def test_two_gloo_processes_equal_one(workspace, tmp_path, second_pass):
    root, data, model, reference = workspace
    out = tmp_path / "run"
    done = torchrun(2, dissect_args(model, data, out, "--second-pass", second_pass))
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["complete"] and config["run"]["world_size"] == 2
    assert_same_results(reference, out)
    assert "Interpretability per layer" in done.stdout  # rank 0 prints the summary once
    assert done.stdout.count("Interpretability per layer") == 1


@pytest.mark.parametrize("resume_with", [2, 1])
def test_killed_distributed_run_resumes(workspace, tmp_path, resume_with):
    root, data, _, reference = workspace
    slow = write_model(tmp_path / "slow.py", slow_forward=0.2)
    out = tmp_path / "run"
    args = dissect_args(slow, data, out, "--checkpoint-every", "0.01")
    proc = subprocess.Popen(torchrun_cmd(2, args, free_port()), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True)
    at = kill_when(proc, out, 1, 4)
    assert at["world_size"] == 2 and at["batches_done"] < 11
    if resume_with == 2:
        again = torchrun(2, args)
    else:
        again = ndcore(args)
    assert again.returncode == 0, again.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["complete"] and config["run"]["resumed"], again.stderr[-3000:]
    assert_same_results(reference, out)


def test_generator_run_on_two_processes_equals_one(tmp_path):
    """GAN dissection is the same code path: sample i is a function of (seed, i) on any rank."""
    planted = f"python:{Path(__file__).parent / 'planted_generator.py'}:build"
    args = lambda out: ["dissect", "--model", planted, "--layers", "units", "--segmenter",
                        "colors", "--samples", "90", "--seed", "3", "--batch-size", "8",
                        "--quantile", "0.05", "--out", str(out), "--quiet", "--no-report"]
    one = ndcore(args(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun(2, args(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_results(tmp_path / "one", tmp_path / "two", layers=("units",))
    assert json.loads((tmp_path / "two" / "config.json").read_text())["run"]["world_size"] == 2
