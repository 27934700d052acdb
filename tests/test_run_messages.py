"""What `ndcore dissect` says about its --out: a resumed run says where it resumes, a finished
run is read back (not recomputed) and says so, ndcore's warnings are one plain line, and Ctrl-C
with loader workers prints `interrupted` and nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import List, Tuple

import pytest

from ndcore.cli import main
from run_fixture import dissect_args, env, write_dataset

MODEL = '''
import os
import time
import warnings

import torch
from torch import nn


class Counting(nn.Module):
    """Counts its forward calls in $NDTEST_CALLS; Ctrl-C (KeyboardInterrupt) at call
    $NDTEST_STOP_AT; sleeps $NDTEST_SLOW seconds a call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        calls = os.environ.get("NDTEST_CALLS")
        if calls:
            with open(calls, "a") as f:
                f.write("x")
            stop = int(os.environ.get("NDTEST_STOP_AT", "0"))
            if stop and os.path.getsize(calls) >= stop:
                raise KeyboardInterrupt
        time.sleep(float(os.environ.get("NDTEST_SLOW", "0")))
        return self.inner(x)


def build():
    if os.environ.get("NDTEST_WARN"):
        warnings.warn("a warning of the model file")
    torch.manual_seed(0)
    return Counting(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(6, 5, 3, padding=1)))
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Tuple[Path, Path]:
    root = tmp_path_factory.mktemp("messages")
    model = root / "counting.py"
    model.write_text(MODEL)
    return write_dataset(root / "data", n_images=24), model


def args(workspace, out: Path, *extra: str) -> List[str]:
    data, model = workspace
    return dissect_args(model, data, out, *extra)


def cli(capsys, argv: List[str]) -> Tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def calls(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def interrupted_run(workspace, out: Path, capsys, monkeypatch, tmp_path: Path) -> dict:
    """A run stopped by Ctrl-C after two batches, with its checkpoint; its progress.json."""
    monkeypatch.setenv("NDTEST_CALLS", str(tmp_path / "stop-calls.txt"))
    monkeypatch.setenv("NDTEST_STOP_AT", "4")  # call 1 decides the layouts; 2, 3 are batches
    rc, out_text, _ = cli(capsys, args(workspace, out, "--checkpoint-every", "0.0001"))
    assert (rc, out_text.strip()) == (130, "interrupted")
    monkeypatch.delenv("NDTEST_STOP_AT")
    monkeypatch.delenv("NDTEST_CALLS")
    return json.loads((out / "checkpoint" / "progress.json").read_text())


def test_a_complete_run_is_read_back_not_recomputed(workspace, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    rc, first, err = cli(capsys, args(workspace, out))
    assert rc == 0, first + err
    assert "already complete" not in err
    config = (out / "config.json").read_text()
    counted = tmp_path / "calls.txt"
    monkeypatch.setenv("NDTEST_CALLS", str(counted))

    rc, again, err = cli(capsys, args(workspace, out))
    assert rc == 0, again + err
    assert err.strip() == f"{out}: already complete (use --overwrite to redo)"
    assert again == first  # the same summary, read from disk
    assert calls(counted) <= 1  # probe image 0 decides the layouts; no pass ran
    assert (out / "config.json").read_text() == config

    # another cut-off relabels the saved counts, as `ndcore summary --write` would
    rc, relabelled, err = cli(capsys, args(workspace, out, "--cutoff", "0.2"))
    assert rc == 0 and "already complete" in err
    assert calls(counted) <= 2
    assert json.loads((out / "config.json").read_text())["options"]["cutoff"] == 0.2

    rc, redone, err = cli(capsys, args(workspace, out, "--overwrite"))
    assert rc == 0 and "already complete" not in err
    assert calls(counted) > 2 + 6  # every batch again (6 batches of 4 images)


def test_a_finished_run_that_cannot_be_read_is_computed_again(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, args(workspace, out))[0] == 0
    (out / "inner.4" / "thresholds.npy").unlink()
    rc, text, err = cli(capsys, args(workspace, out))
    assert rc == 0, text + err
    layer = out / "inner.4"
    assert err.strip() == (f"warning: {out}: the finished run cannot be read back ({layer}: "
                           "incomplete layer result (missing thresholds.npy)); computing it again")
    assert (out / "inner.4" / "thresholds.npy").is_file()
    assert json.loads((out / "config.json").read_text())["complete"] is True


def test_a_resumed_run_says_where_it_resumes(workspace, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    progress = interrupted_run(workspace, out, capsys, monkeypatch, tmp_path)
    assert progress["phase"] == 1 and progress["images_done"] == 8, progress
    rc, text, err = cli(capsys, args(workspace, out))
    assert rc == 0, text + err
    assert err.strip() == "resuming from checkpoint: pass 1, 8/24 images"
    assert json.loads((out / "config.json").read_text())["run"]["resumed"] is True


def test_ndcore_warnings_are_one_plain_line(workspace, tmp_path, capsys, monkeypatch, recwarn):
    out = tmp_path / "run"
    interrupted_run(workspace, out, capsys, monkeypatch, tmp_path)
    state = out / "checkpoint" / "state.pt"
    state.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("NDTEST_WARN", "1")
    shown = warnings.showwarning
    rc, text, err = cli(capsys, args(workspace, out))
    assert rc == 0, text + err
    ours = [l for l in err.splitlines() if "unreadable checkpoint" in l]
    assert len(ours) == 1 and ours[0].startswith(f"warning: {state}: unreadable checkpoint (")
    assert ours[0].endswith("); starting the run again"), err
    assert "UserWarning" not in err and "rundir.py" not in err and "warnings.warn" not in err
    # another library's (here the model file's) warning goes to Python's own machinery
    assert "a warning of the model file" not in err
    assert any("a warning of the model file" in str(w.message) for w in recwarn.list)
    assert warnings.showwarning is shown  # the Python API's warnings stay Python's


# -- Ctrl-C with DataLoader workers (real processes, real signals) ----------------------------


def start(workspace, out: Path, *extra: str) -> subprocess.Popen:
    """The run with 2 loader workers, in its own process group (as a terminal runs it), with
    SIGINT handled even where this test runs with it ignored (a background job)."""
    argv = args(workspace, out, "--checkpoint-every", "0.01", *extra)
    argv[argv.index("--workers") + 1] = "2"
    return subprocess.Popen(
        [sys.executable, "-m", "ndcore", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env({"NDTEST_SLOW": "0.1"}),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(proc: subprocess.Popen, out: Path, phase: int, batches: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            p = json.loads((out / "checkpoint" / "progress.json").read_text())
        except (OSError, ValueError):
            p = None
        if p is not None and p["phase"] == phase and p["batches_done"] >= batches:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()}")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the run never got there")


def children(pid: int) -> List[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, sends POSIX signals")
@pytest.mark.parametrize("phase, batches", [(1, 1), (1, 3), (2, 1)])
def test_ctrl_c_with_loader_workers_prints_interrupted_only(workspace, tmp_path, phase,
                                                            batches):
    out = tmp_path / "run"
    proc = start(workspace, out)
    wait_for(proc, out, phase, batches)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the main process and its workers
    stdout, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, stdout.strip(), stderr.strip()) == (130, "interrupted", "")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, sends POSIX signals")
def test_loader_workers_leave_ctrl_c_to_the_main_process(workspace, tmp_path):
    """A worker that took SIGINT itself would die mid-transfer (a traceback, or a run ended
    by a 'worker exited unexpectedly' error); the workers ignore it and the run goes on."""
    out = tmp_path / "run"
    proc = start(workspace, out)
    wait_for(proc, out, 1, 1)
    workers = children(proc.pid)
    assert workers, "premise: the loader workers are running"
    for pid in workers:
        os.kill(pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "config.json").read_text())["complete"] is True


def test_loader_workers_drop_the_connections_a_ctrl_c_breaks():
    """A Ctrl-C may end the main process while it fetches a batch's shared memory from a
    worker, whose resource-sharer thread then reports the broken connection through
    sys.excepthook: a worker drops those, and reports anything else."""
    code = ("import sys\n"
            "from ndcore.engine.stream import _ignore_interrupts\n"
            "_ignore_interrupts(0)\n"
            "for e in (ConnectionResetError('reset'), EOFError('eof'), ValueError('kept')):\n"
            "    sys.excepthook(type(e), e, None)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ValueError: kept" in done.stderr
    assert "reset" not in done.stderr and "eof" not in done.stderr
