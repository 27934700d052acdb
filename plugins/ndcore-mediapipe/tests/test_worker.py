"""The worker process: found or refused in one line, batched, errors as one line, stopped on
close / collection / exit / the parent's death, never a zombie, safe across fork."""

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
import torch

from conftest import alive, run_ndcore, worker_pids
from ndcore.plugin_api import PluginError
from ndcore_mediapipe import FacePartsSegmenter, worker
from ndcore_mediapipe.client import WorkerClient, WorkerError
from ndcore_mediapipe.env import ENV_VAR


def one_line(message):
    return "\n" not in str(message).strip()


# -- a missing or broken worker environment ----------------------------------------------------


def test_missing_environment_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(PluginError) as e:
        FacePartsSegmenter()
    msg = str(e.value)
    assert one_line(msg)
    assert f"no mediapipe worker environment at {ENV_VAR}={tmp_path / 'nowhere'}" in msg
    assert f"-m ndcore_mediapipe.env {tmp_path / 'nowhere'}" in msg


def test_nothing_found_anywhere_names_the_default_command(tmp_path, monkeypatch):
    from ndcore_mediapipe import env

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(env, "candidates", lambda: [tmp_path / ".venv-mediapipe"])
    with pytest.raises(PluginError, match=r"no mediapipe worker environment \(\.venv-mediapipe "
                                          r"in .*; create it with: .* -m ndcore_mediapipe\.env "):
        env.find_worker_python()


def test_environment_without_mediapipe_is_one_line(tmp_path, monkeypatch):
    venv = tmp_path / "empty"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setenv(ENV_VAR, str(venv))
    with pytest.raises(WorkerError) as e:
        FacePartsSegmenter()
    msg = str(e.value)
    assert one_line(msg)
    assert "could not start mediapipe: ModuleNotFoundError: No module named 'mediapipe'" in msg
    assert f"-m ndcore_mediapipe.env {venv}" in msg


def test_a_python_that_dies_at_start_is_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'fake python: broken' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(fake))
    with pytest.raises(WorkerError) as e:
        FacePartsSegmenter()
    msg = str(e.value)
    assert one_line(msg)
    assert "exited with status 7 while starting (its last message: fake python: broken)" in msg
    assert f"-m ndcore_mediapipe.env {tmp_path}" in msg


def test_cli_with_a_bad_environment_is_one_line(tmp_path):
    done = run_ndcore(["dissect", "--model", "dcgan-faces", "--layers", "main.5", "--segmenter",
                       "face-parts", "--samples", "8", "--out", str(tmp_path / "run"),
                       "--quiet", "--no-report"], env={ENV_VAR: str(tmp_path / "nowhere")})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [l for l in done.stdout.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: segmenter adapter 'face-parts'")
    assert "-m ndcore_mediapipe.env" in lines[0]
    assert "Traceback" not in done.stderr


# -- the protocol and errors inside the worker ---------------------------------------------


def test_frames_round_trip():
    import io

    buf = io.BytesIO()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(5, dtype=np.uint8)
    worker.write_message(buf, {"op": "x", "k": [1, 2]}, a, b)
    worker.write_message(buf, {"op": "y"})
    buf.seek(0)
    h, payload = worker.read_message(buf)
    assert h == {"op": "x", "k": [1, 2], "nbytes": 53}
    assert np.array_equal(np.frombuffer(payload[:48], np.float32).reshape(3, 4), a)
    assert payload[48:] == b.tobytes()
    assert worker.read_message(buf) == ({"op": "y", "nbytes": 0}, b"")
    assert worker.read_message(buf) is None  # a clean end
    with pytest.raises(worker.ProtocolError, match="inside a frame"):
        worker.read_message(io.BytesIO(buf.getvalue()[:20]))

    class Trickle(io.RawIOBase):
        """A raw pipe end that takes at most 7 bytes a write, and gives 5 a read."""

        def __init__(self, data=b""):
            self.data, self.pos = bytearray(data), 0

        def writable(self):
            return True

        def readable(self):
            return True

        def write(self, b):
            chunk = bytes(memoryview(b)[:7])
            self.data += chunk
            return len(chunk)

        def readinto(self, b):
            chunk = self.data[self.pos:self.pos + min(5, len(b))]
            b[:len(chunk)] = chunk
            self.pos += len(chunk)
            return len(chunk)

    pipe = Trickle()
    worker.write_message(pipe, {"op": "x"}, a)
    h, payload = worker.read_message(Trickle(pipe.data))
    assert h["nbytes"] == 48 and np.array_equal(np.frombuffer(payload, np.float32), a.ravel())


def test_error_inside_the_worker_is_one_line_and_the_worker_goes_on(segmenter, faces64):
    client = segmenter.client
    pid = client.pid
    with client._lock:  # a request whose payload does not match its shape
        worker.write_message(client._proc.stdin, {"op": "segment", "shape": [2, 64, 64, 3]},
                             np.zeros(10, np.uint8))
        header, _ = client._receive(30)
    assert header["op"] == "error"
    assert header["error"] == "ValueError: 10 bytes of images for shape [2, 64, 64, 3]"
    with client._lock:
        worker.write_message(client._proc.stdin, {"op": "dance"})
        header, _ = client._receive(30)
    assert header == {"op": "error", "error": "ValueError: unknown request 'dance'",
                      "nbytes": 0}
    # the same worker still answers
    seg = segmenter.segment(faces64[:2])
    assert client.pid == pid and seg.valid.all()


def test_error_answer_becomes_one_line_workererror(segmenter, monkeypatch):
    client = segmenter.client
    monkeypatch.setattr(client, "size", "not-a-number")  # the worker's int() fails on it
    with pytest.raises(WorkerError) as e:
        client.segment(np.zeros((1, 8, 8, 3), np.uint8))
    assert str(e.value) == ("the mediapipe worker failed on a batch of 1 images: ValueError: "
                            "invalid literal for int() with base 10: 'not-a-number'")


def test_a_killed_worker_is_one_line_and_the_next_batch_restarts_it(tmp_path):
    with FacePartsSegmenter() as seg:
        images = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
        seg.segment(images)
        pid = seg.client.pid
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(WorkerError) as e:
            seg.segment(images)
        assert one_line(str(e.value))
        assert "exited with status -9" in str(e.value)
        assert not alive(pid)  # waited for: no zombie
        seg.segment(images)
        assert seg.client.pid not in (None, pid)


FAKE_WORKER = """#!{python}
# a stand-in for the worker's Python: says hello, then {behaviour} on the first request
import sys, time
sys.path.insert(0, {plugin!r})
from ndcore_mediapipe.worker import read_message, write_message
write_message(sys.stdout.buffer, {{"op": "hello", "protocol": 1}})
read_message(sys.stdin.buffer)
print("fake worker: {behaviour}", file=sys.stderr, flush=True)
if "{behaviour}" == "crashes":
    sys.exit(9)
time.sleep(60)
"""


def fake_worker(tmp_path, behaviour):
    from pathlib import Path

    path = tmp_path / behaviour / "bin" / "python"
    path.parent.mkdir(parents=True)
    plugin = str(Path(worker.__file__).resolve().parents[1])
    path.write_text(FAKE_WORKER.format(python=sys.executable, behaviour=behaviour,
                                       plugin=plugin))
    path.chmod(0o755)
    return str(path)


def test_a_worker_that_dies_during_a_batch_is_one_line(tmp_path):
    with WorkerClient(fake_worker(tmp_path, "crashes")) as client:
        pid = client.pid
        with pytest.raises(WorkerError) as e:
            client.segment(np.zeros((2, 8, 8, 3), np.uint8))
        assert str(e.value) == (f"the mediapipe worker ({client.python}) exited with status 9 "
                                "during a batch (its last message: fake worker: crashes)")
        assert not alive(pid)


def test_a_worker_that_hangs_is_killed_and_one_line(tmp_path):
    with WorkerClient(fake_worker(tmp_path, "hangs")) as client:
        client.timeout_base, client.timeout_per_image = 1.0, 0.0
        pid = client.pid
        start = time.monotonic()
        with pytest.raises(WorkerError) as e:
            client.segment(np.zeros((2, 8, 8, 3), np.uint8))
        assert time.monotonic() - start < 10
        assert str(e.value).startswith(f"the mediapipe worker ({client.python}) exited with "
                                       "status -9 during a batch: no answer in 1 s")
        assert not alive(pid)


# -- the worker's life ---------------------------------------------------------------------


def test_close_stops_and_reaps_the_worker():
    seg = FacePartsSegmenter()
    pid, proc = seg.client.pid, seg.client._proc
    assert alive(pid)
    seg.close()
    assert proc.returncode == 0  # close asked it to exit, and waited for it
    assert not alive(pid)  # gone, not a zombie
    seg.close()  # twice is fine


def test_collection_stops_the_worker():
    seg = FacePartsSegmenter()
    pid = seg.client.pid
    del seg
    gc.collect()
    assert not alive(pid)


EXIT_SCRIPT = textwrap.dedent("""
    import atexit, os, sys, time
    pid = []
    # registered before the segmenter exists, so it runs after the segmenter's exit hook
    atexit.register(lambda: print("alive at exit:", os.path.exists(f"/proc/{pid[0]}"),
                                  flush=True))
    from ndcore_mediapipe import FacePartsSegmenter
    seg = FacePartsSegmenter()
    pid.append(seg.client.pid)
    print(seg.client.pid, flush=True)
    if sys.argv[1] == "hang":
        time.sleep(600)
""")


def test_the_worker_stops_when_python_exits_without_close(tmp_path):
    tag = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, "exit"], capture_output=True,
                          text=True, env=dict(os.environ, NDCORE_MEDIAPIPE_TEST_TAG=tag),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    # stopped and reaped by its own process at exit, not left to exit on its own later
    assert "alive at exit: False" in done.stdout, done.stdout
    assert not alive(pid) and worker_pids(tag) == []


def test_the_worker_stops_when_its_parent_is_killed(tmp_path):
    tag = uuid.uuid4().hex
    parent = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT, "hang"],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, NDCORE_MEDIAPIPE_TEST_TAG=tag))
    pid = int(parent.stdout.readline())
    assert alive(pid)
    parent.kill()  # no finalizer runs: the worker sees the end of its input
    parent.wait()
    deadline = time.monotonic() + 10
    while worker_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    # the orphan was re-parented (to init, which reaps it): it must have exited
    assert worker_pids(tag) == []


def _segment_in_child(queue):
    seg = _FORK_SEGMENTER
    out = seg.segment(_FORK_IMAGES)
    queue.put((seg.client._proc.pid, out.labels.numpy(), os.getpid()))


def test_a_forked_child_starts_its_own_worker(segmenter, faces64):
    global _FORK_SEGMENTER, _FORK_IMAGES
    _FORK_SEGMENTER, _FORK_IMAGES = segmenter, faces64[:3]
    parent_pid = segmenter.client._proc.pid
    mine = segmenter.segment(faces64[:3]).labels.numpy()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_segment_in_child, args=(queue,))
    child.start()
    child_worker, labels, _ = queue.get(timeout=120)
    child.join(60)
    assert child.exitcode == 0
    assert child_worker != parent_pid
    np.testing.assert_array_equal(labels, mine)
    # the parent's worker was not disturbed
    assert segmenter.client.pid == parent_pid
    np.testing.assert_array_equal(segmenter.segment(faces64[:3]).labels.numpy(), mine)


# -- batches -------------------------------------------------------------------------------


def test_same_labels_whatever_the_batches(segmenter, segmented, faces64):
    """Each image is processed alone in the worker: batches and chunks change nothing, as a
    resumable, shardable dissection needs."""
    idx = [5, 0, 31, 17, 48, 2]
    alone = [segmenter.segment(faces64[i:i + 1]) for i in idx]
    for k, i in enumerate(idx):
        assert torch.equal(alone[k].labels[0], segmented.labels[i])
        assert bool(alone[k].valid[0]) == bool(segmented.valid[i])
    chunked = FacePartsSegmenter(chunk=7)
    try:
        again = chunked.segment(faces64)
    finally:
        chunked.close()
    assert torch.equal(again.labels, segmented.labels)
    assert torch.equal(again.valid, segmented.valid)
