"""A run killed with SIGKILL in pass 1 or pass 2 and run again gives exactly the results of an
uninterrupted run, and leaves no scratch behind."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from run_fixture import (assert_same_results, dissect_args, ndcore, start_ndcore, write_dataset,
                         write_model)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_dataset(root / "data", n_images=48)
    reference = root / "reference"
    fast = write_model(root / "fast.py")
    done = ndcore(dissect_args(fast, data, reference))
    assert done.returncode == 0, done.stderr
    return root, data, reference


def progress(out: Path):
    try:
        return json.loads((out / "checkpoint" / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def descendants(pid: int):
    """``pid`` and every process under it (torchrun puts its workers in their own groups)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def kill_tree(proc) -> None:
    for pid in descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def kill_when(proc, out: Path, phase: int, min_batches: int, timeout: float = 120) -> dict:
    """SIGKILL the run (all its processes) once its checkpoint says ``phase`` with
    ``min_batches`` done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = progress(out)
        if p is not None and p["phase"] == phase and p["batches_done"] >= min_batches:
            kill_tree(proc)
            return p
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill point: {proc.stderr.read()}")
        time.sleep(0.01)
    kill_tree(proc)
    raise AssertionError("the kill point was never reached")


def my_scratch(root: Path):
    host = "".join(ch if ch.isalnum() else "_" for ch in socket.gethostname())[:40]
    return sorted(p.name for p in root.glob(f"ndcore-scratch-{host}-*"))


CASES = {
    # name: (extra options, slow forward s, slow labels-only read s, phase, batches done)
    "pass1": ([], 0.15, 0.0, 1, 3),
    "pass2-kept-maps": ([], 0.0, 0.15, 2, 2),
    "pass2-forward": (["--second-pass", "forward"], 0.15, 0.0, 2, 3),
    "pass1-scratch-dir": (["--cache-dir", "{scratch}"], 0.15, 0.0, 1, 4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_then_rerun_gives_identical_results(workspace, tmp_path, case):
    root, data, reference = workspace
    extra, slow_forward, slow_labels, phase, batches = CASES[case]
    scratch = tmp_path / "scratch"
    extra = [e.format(scratch=scratch) for e in extra]
    model = write_model(tmp_path / "slow.py", slow_forward, slow_labels)
    out = tmp_path / "run"
    args = dissect_args(model, data, out, "--checkpoint-every", "0.01", *extra)

    proc = start_ndcore(args)
    at = kill_when(proc, out, phase, batches)
    assert json.loads((out / "config.json").read_text())["complete"] is False
    if "--cache-dir" in extra:
        assert my_scratch(scratch), "premise: the killed run left its scratch folder"

    summary = ndcore(["summary", str(out)])
    assert summary.returncode == 2
    assert f"{at['images_done']} of 48 images" in summary.stdout.replace("\n", " ")

    again = ndcore(args)
    assert again.returncode == 0, again.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["complete"] and config["run"]["resumed"]
    assert_same_results(reference, out)
    assert not (out / "checkpoint").exists()
    if "--cache-dir" in extra:
        assert my_scratch(scratch) == [], "stale scratch of the killed run was removed"


def test_resumed_run_does_not_redo_finished_batches(workspace, tmp_path):
    """The time lost to a kill is bounded: the resumed run only does what was not done."""
    root, data, reference = workspace
    model = write_model(tmp_path / "slow.py", 0.15, 0.0)
    out = tmp_path / "run"
    args = dissect_args(model, data, out, "--checkpoint-every", "0.01", "--second-pass", "cache")
    proc = start_ndcore(args)
    kill_when(proc, out, 1, 8)
    calls = tmp_path / "calls.txt"
    counted = write_model(tmp_path / "slow.py", 0.0, 0.0)
    counted.write_text(counted.read_text().replace(
        "        return self.inner(x)",
        f"        open({str(calls)!r}, 'a').write('x')\n        return self.inner(x)"))
    again = ndcore(args)
    assert again.returncode == 0, again.stderr
    # 12 batches in all: at least 8 were done before the kill, and pass 2 reads kept maps;
    # one more call decides the layers' layouts on probe image 0 before the run starts.
    assert len(calls.read_text()) <= 12 - 8 + 1
    assert_same_results(reference, out)
