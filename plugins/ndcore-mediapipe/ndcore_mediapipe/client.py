"""The client side of the worker: one persistent ``worker.py`` process per segmenter, started
in the mediapipe environment, batches sent over its stdin and answered on its stdout.

- A missing or broken worker environment is one line naming the command that creates it.
- An error inside the worker comes back as one line (the worker stays up for the next batch);
  a worker that dies or hangs is one line too, with the last thing it wrote to stderr.
- The worker stops when the client is closed, when the client is garbage-collected, and when
  the interpreter exits (``weakref.finalize``). It is always waited for: no zombie. If this
  process is killed outright, the worker reads the end of its stdin and exits by itself.
- After a ``fork`` (DataLoader workers), the child does not share the parent's pipes: it
  starts its own worker the first time it segments.
"""

from __future__ import annotations

import collections
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ndcore.plugin_api import PluginError

from . import worker as protocol
from .env import create_command, find_worker_python, venv_of

WORKER = Path(protocol.__file__).resolve()
START_TIMEOUT = 120.0   # importing mediapipe and building both graphs
STOP_TIMEOUT = 5.0


class WorkerError(PluginError):
    """The worker could not start, failed on a batch, died or hung (one line)."""


def _drain(stream, tail: collections.deque) -> None:
    """Keep the last lines the worker wrote to stderr (its logs), so that the pipe never fills."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line:
                tail.append(line)
    except (OSError, ValueError):
        pass


def _stop(proc: subprocess.Popen, stdin, stdout, drain: Optional[threading.Thread] = None,
          timeout: float = STOP_TIMEOUT) -> None:
    """Ask the worker to exit (close / end of input), then terminate, then kill; always wait
    (no zombie), then close its stderr once the drain thread has read it to the end."""
    if proc.poll() is None:
        try:
            protocol.write_message(stdin, {"op": "close"})
        except (OSError, ValueError):
            pass
    for stream in (stdin, stdout):
        try:
            stream.close()
        except (OSError, ValueError):
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if drain is not None:
        drain.join(1.0)
    try:
        proc.stderr.close()
    except (OSError, ValueError, AttributeError):
        pass


class _Finalizer:
    """Stops a worker, but only in the process that started it (not in a forked child)."""

    def __init__(self, proc, drain, pid):
        self.proc, self.drain, self.pid = proc, drain, pid

    def __call__(self):
        if os.getpid() == self.pid:
            _stop(self.proc, self.proc.stdin, self.proc.stdout, self.drain)


class WorkerClient:
    """A persistent mediapipe worker and the requests it answers."""

    def __init__(self, python: Optional[str] = None, size: int = 256,
                 timeout_per_image: float = 5.0, timeout_base: float = 30.0) -> None:
        self.python = find_worker_python(python)
        self.create = create_command(venv_of(Path(self.python)))  # for error messages
        self.size = int(size)
        # a batch that gets no answer in timeout_base + timeout_per_image * images: a hang
        self.timeout_per_image, self.timeout_base = float(timeout_per_image), float(timeout_base)
        self.hello: Dict = {}
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen] = None
        self._pid = None
        self._finalizer = None
        self._stderr: collections.deque = collections.deque(maxlen=20)
        self._start()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The worker's process id (None when it is not running)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        env = dict(os.environ)
        env.setdefault("GLOG_minloglevel", "2")      # mediapipe's C++ logs: errors only
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.pop("PYTHONPATH", None)                   # ndcore's packages (numpy 2) stay out
        env.pop("PYTHONHOME", None)
        try:
            proc = subprocess.Popen([self.python, "-I", str(WORKER)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    bufsize=0)
        except OSError as e:
            raise WorkerError(f"cannot start the mediapipe worker {self.python} ({e}); "
                              f"create its environment with: {self.create}") from None
        self._proc, self._pid = proc, os.getpid()
        self._stderr = collections.deque(maxlen=20)
        drain = threading.Thread(target=_drain, args=(proc.stderr, self._stderr), daemon=True,
                                 name="ndcore-mediapipe-stderr")
        drain.start()
        self._finalizer = weakref.finalize(self, _Finalizer(proc, drain, self._pid))
        try:
            header, _ = self._receive(START_TIMEOUT, starting=True)
        except WorkerError:
            self.close()
            raise
        if header.get("op") == "error":
            self.close()
            raise WorkerError(f"the mediapipe worker ({self.python}) could not start "
                              f"mediapipe: {header.get('error')}; recreate its environment "
                              f"with: {self.create}")
        if header.get("op") != "hello" or header.get("protocol") != protocol.PROTOCOL:
            self.close()
            raise WorkerError(f"the mediapipe worker ({self.python}) answered "
                              f"{header.get('op')!r} (protocol {header.get('protocol')}), "
                              f"expected hello with protocol {protocol.PROTOCOL}")
        self.hello = header

    def close(self) -> None:
        """Stop the worker and wait for it (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()  # runs at most once
            self._finalizer = None
        self._proc = None

    def _ensure_started(self) -> None:
        if self._pid != os.getpid():  # a forked child: the pipes are the parent's
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer, self._proc = None, None
            self._start()
        elif self._proc is None:
            self._start()

    # -- requests ---------------------------------------------------------------------------

    def _last_stderr(self) -> str:
        time.sleep(0.05)  # let the drain thread catch the last line
        lines = [l for l in list(self._stderr) if "Traceback" not in l]
        return f" (its last message: {lines[-1][:300]})" if lines else ""

    def _died(self, what: str) -> WorkerError:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        tail = self._last_stderr()
        self.close()
        status = f"exited with status {code}" if code is not None else "stopped answering"
        return WorkerError(f"the mediapipe worker ({self.python}) {status} {what}{tail}")

    def _receive(self, timeout: float, starting: bool = False) -> Tuple[Dict, bytes]:
        proc = self._proc
        what = "while starting" if starting else "during a batch"
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        while True:  # wait for the first byte with a deadline, then read the frame
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                err = self._died(f"{what}: no answer in {timeout:.0f} s")
                raise err
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                break
        try:
            message = protocol.read_message(proc.stdout)
        except protocol.ProtocolError as e:
            raise self._died(f"{what} ({e})") from None
        if message is None:
            if starting:
                proc_code = proc.wait()
                tail = self._last_stderr()
                self.close()
                raise WorkerError(
                    f"the mediapipe worker ({self.python}) exited with status {proc_code} "
                    f"while starting{tail}; create its environment with: {self.create}")
            raise self._died(what)
        return message

    def segment(self, images: np.ndarray) -> Tuple[Dict, np.ndarray, np.ndarray]:
        """uint8 RGB [B, H, W, 3] -> (header, landmarks float32 [B, 478, 3], person masks
        uint8 [B, H*k, W*k])."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[3] != 3:
            raise WorkerError(f"images of shape {images.shape}: expected [B, H, W, 3]")
        with self._lock:
            self._ensure_started()
            proc = self._proc
            request = {"op": "segment", "shape": [int(s) for s in images.shape],
                       "size": self.size}
            try:
                protocol.write_message(proc.stdin, request, images)
            except (BrokenPipeError, OSError, ValueError):
                raise self._died("before a batch was sent") from None
            header, payload = self._receive(self.timeout_base +
                                            self.timeout_per_image * len(images))
        if header.get("op") == "error":
            raise WorkerError(f"the mediapipe worker failed on a batch of {len(images)} "
                              f"images: {header.get('error')}")
        if header.get("op") != "result" or header.get("count") != len(images):
            raise WorkerError(f"the mediapipe worker answered {header.get('op')!r} for "
                              f"{header.get('count')} images, expected a result for "
                              f"{len(images)}")
        lm_shape: List[int] = header["landmarks"]
        mask_shape: List[int] = header["mask"]
        n_lm = int(np.prod(lm_shape)) * 4
        landmarks = np.frombuffer(payload, np.float32, count=int(np.prod(lm_shape)))
        masks = np.frombuffer(payload, np.uint8, offset=n_lm)
        return header, landmarks.reshape(lm_shape), masks.reshape(mask_shape)

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
