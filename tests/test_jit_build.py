"""The first-use (JIT) build of the op: compiled once into a cache, reused by later processes
without a compiler, compiled once by processes started together (the file lock); a missing
compiler gives one clear message; NDCORE_ALLOW_SLOW=1 accepts the slow fallback with a warning.

The prebuilt ndcore._C is ignored with NDCORE_FORCE_JIT=1; only the CPU kernels are compiled
(NDCORE_FORCE_CPU=1), once per session, into a temporary cache shared by this module's tests.
Wrappers named c++ and ninja, first on PATH, log every call: the compiler's side of the story.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The op's C++ sources (csrc/): each must be compiled exactly once by a first build.
CPP_SOURCES = ("module.cpp", "checks.cpp", "tally.cpp", "iou_histogram.cpp", "select.cpp",
               "tally_cpu.cpp", "iou_histogram_cpu.cpp", "select_cpu.cpp")

LOAD_SNIPPET = """
import json, sys
import ndcore.ops as ops
info = ops.extension_info(detailed=True)
import torch
acts = torch.rand(2, 3, 4, 4)
thr = torch.full((3,), 0.5)
labels = torch.randint(0, 3, (2, 1, 8, 8), dtype=torch.int32)
cat = torch.zeros(3, dtype=torch.int64)
got = ops.tally(acts, thr, labels, cat, 3, 1)
want = ops.tally(acts, thr, labels, cat, 3, 1, use_reference=True)
assert all(torch.equal(g, w) for g, w in zip(got, want))
print(json.dumps({k: info[k] for k in ("loaded", "path", "where", "reason", "cuda")}))
print("prebuilt imported:", "ndcore._C" in sys.modules)
"""


def _base_env(cache: Path, path: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CXX", "NDCORE_REQUIRE_EXTENSION", "NDCORE_ALLOW_SLOW")}
    env.update(NDCORE_FORCE_JIT="1", NDCORE_FORCE_CPU="1", NDCORE_CACHE_DIR=str(cache),
               PATH=path, PYTHONWARNINGS="default")
    return env


@pytest.fixture(scope="module")
def wrappers(tmp_path_factory) -> tuple[Path, Path]:
    """A bin/ with logging c++ and ninja wrappers, and their log."""
    root = tmp_path_factory.mktemp("toolchain")
    bin_dir, log = root / "bin", root / "calls.log"
    bin_dir.mkdir()
    for tool in ("c++", "ninja"):
        real = shutil.which(tool)
        if real is None:
            pytest.skip(f"{tool} is not installed")
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
    return bin_dir, log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def concurrent_build(wrappers, tmp_path_factory):
    """Two processes started together on an empty cache: (cache, their results, the calls)."""
    bin_dir, log = wrappers
    cache = tmp_path_factory.mktemp("jit-cache")
    env = _base_env(cache, f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    procs = [subprocess.Popen([sys.executable, "-c", LOAD_SNIPPET], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, out + err
    calls = _calls(log)
    log.unlink(missing_ok=True)
    return cache, results, calls


@pytest.mark.slow
def test_concurrent_processes_compile_once(concurrent_build) -> None:
    cache, results, calls = concurrent_build
    stderrs = [err for _, err in results]
    assert sum("ndcore: compiling the op" in err for err in stderrs) == 1, stderrs
    # the other one waited behind the lock (it started while the first was compiling)
    assert sum("waiting for another process" in err for err in stderrs) == 1, stderrs
    builds = [c for c in calls if c.startswith("ninja ") and "--version" not in c]
    assert len(builds) == 1, builds
    compiles = [c for c in calls if c.startswith("c++ ") and " -c " in c]
    for name in CPP_SOURCES:  # each source compiled once, and nothing else
        assert sum(f"/{name} " in c or c.endswith(f"/{name}") for c in compiles) == 1, (name, compiles)
    assert len(compiles) == len(CPP_SOURCES), compiles
    for out, _ in results:
        assert '"path": "jit"' in out and f'"where": "{cache}/' in out, out
        assert "prebuilt imported: False" in out, out  # ignored before import, not after


@pytest.mark.slow
def test_later_process_reuses_cache_without_compiler(concurrent_build, wrappers) -> None:
    cache, _, _ = concurrent_build
    bin_dir, log = wrappers
    before = sorted((p.relative_to(cache), p.stat().st_mtime_ns) for p in cache.rglob("*")
                    if p.is_file() and not p.name.endswith("lock"))
    env = _base_env(cache, f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"path": "jit"' in proc.stdout and f'"where": "{cache}/' in proc.stdout
    assert _calls(log) == [], _calls(log)  # no compiler, no ninja
    assert "compiling" not in proc.stderr, proc.stderr
    after = sorted((p.relative_to(cache), p.stat().st_mtime_ns) for p in cache.rglob("*")
                   if p.is_file() and not p.name.endswith("lock"))
    assert after == before  # nothing rebuilt nor rewritten


def _no_compiler_path(tmp_path: Path) -> str:
    """A PATH without c++ (nor g++, nor ninja): only an empty directory."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    assert shutil.which("c++", path=str(empty)) is None  # the premise
    return str(empty)


@pytest.mark.parametrize("how", ["no c++ on PATH", "CXX points nowhere"])
def test_missing_compiler_gives_one_clear_message(how: str, tmp_path: Path) -> None:
    if how == "no c++ on PATH":
        env = _base_env(tmp_path / "cache", _no_compiler_path(tmp_path))
    else:
        env = _base_env(tmp_path / "cache", os.environ.get("PATH", ""))
        env["CXX"] = str(tmp_path / "nowhere" / "c++")
    proc = subprocess.run([sys.executable, "-m", "ndcore", "dissect", "--model", "demo",
                           "--layers", "conv5", "--dataset", "synthetic:8",
                           "--out", str(tmp_path / "run"), "--workers", "0", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert "Traceback" not in text, text
    line = errors[0]
    assert "no C++ compiler" in line and "apt install g++" in line, line
    assert "NDCORE_ALLOW_SLOW=1" in line and "NDCORE_FORCE_JIT" in line, line  # why, and the way out
    if how == "CXX points nowhere":
        assert "CXX=" in line and "nowhere" in line, line
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


FALLBACK_SNIPPET = """
import sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ndcore.ops as ops
info = ops.extension_info(detailed=True)
assert info["path"] == "fallback" and not info["loaded"], info
assert "no C++ compiler" in info["reason"], info
msgs = [str(w.message) for w in caught if "falling back" in str(w.message)]
assert len(msgs) == 1 and "NDCORE_ALLOW_SLOW" in msgs[0], [str(w.message) for w in caught]
import torch
acts, thr = torch.rand(1, 2, 3, 3), torch.full((2,), 0.5)
labels = torch.ones(1, 1, 5, 5, dtype=torch.int32)
out = ops.tally(acts, thr, labels, torch.zeros(2, dtype=torch.int64), 2, 1)
assert out[1].shape == (1, 2)
print("fallback ok")
"""


def test_allow_slow_gives_fallback_with_warning(tmp_path: Path) -> None:
    env = _base_env(tmp_path / "cache", _no_compiler_path(tmp_path))
    env["NDCORE_ALLOW_SLOW"] = "1"
    proc = subprocess.run([sys.executable, "-c", FALLBACK_SNIPPET], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "fallback ok" in proc.stdout, proc.stdout + proc.stderr


def test_require_extension_beats_allow_slow(tmp_path: Path) -> None:
    """NDCORE_REQUIRE_EXTENSION=1 keeps meaning 'fail rather than fall back'."""
    env = _base_env(tmp_path / "cache", _no_compiler_path(tmp_path))
    env.update(NDCORE_ALLOW_SLOW="1", NDCORE_REQUIRE_EXTENSION="1")
    proc = subprocess.run([sys.executable, "-c", "import ndcore.ops"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "is required" in proc.stderr and "no C++ compiler" in proc.stderr, proc.stderr


# -------------------------------------------------------------- which prebuilt builds may load


def test_arch_coverage_rules() -> None:
    """SASS X.Y runs on X.Z for Z >= Y only; PTX X.Y on every capability >= X.Y (CUDA docs)."""
    from ndcore.ops.extension import arch_runs_on

    cases = [("8.0;9.0+PTX", (8, 0), True), ("8.0;9.0+PTX", (8, 6), True),
             ("8.0;9.0+PTX", (9, 0), True), ("8.0;9.0+PTX", (12, 0), True),
             ("8.0;9.0+PTX", (7, 5), False), ("8.0", (9, 0), False), ("8.6", (8, 0), False),
             ("7.5 8.0", (8, 9), True), ("9.0", (10, 0), False), ("none", (9, 0), False)]
    for archs, cap, want in cases:
        assert arch_runs_on(archs, cap) is want, (archs, cap)


def test_prebuilt_record_must_match_running_torch() -> None:
    import torch

    from ndcore.ops.extension import prebuilt_mismatch

    same = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI), "cuda": None, "archs": "none"}
    if not torch.cuda.is_available():
        assert prebuilt_mismatch(same, torch) is None
    other_torch = {**same, "torch": "2.0.0+cpu"}
    assert "2.0.0+cpu" in prebuilt_mismatch(other_torch, torch)
    other_cuda = {**same, "torch_cuda": "11.8" if torch.version.cuda != "11.8" else "12.1"}
    assert "CUDA" in prebuilt_mismatch(other_cuda, torch)
    other_abi = {**same, "cxx11_abi": not same["cxx11_abi"]}
    assert "ABI" in prebuilt_mismatch(other_abi, torch)


def _info(env: dict) -> str:
    proc = subprocess.run([sys.executable, "-m", "ndcore", "info"], capture_output=True,
                          text=True, timeout=300, env={**env, "COLUMNS": "500"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return " ".join(line for line in proc.stdout.splitlines() if "ndcore._C" in line)


@pytest.mark.slow
def test_info_says_which_path_loaded_the_op(concurrent_build, wrappers, tmp_path) -> None:
    cache, _, _ = concurrent_build
    bin_dir, _ = wrappers
    line = _info(_base_env(cache, f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"))
    build = next(p for p in cache.iterdir() if p.is_dir())
    assert "compiled at first use" in line and str(build) in line, line
    assert "NDCORE_FORCE_JIT" in line, line  # why not the prebuilt
    slow = _base_env(tmp_path / "cache", _no_compiler_path(tmp_path))
    slow["NDCORE_ALLOW_SLOW"] = "1"
    line = _info(slow)
    assert "fallback to the slow pure-PyTorch ops" in line and "no C++ compiler" in line, line
    line = _info({**slow, "NDCORE_ALLOW_SLOW": "0"})
    assert "not loaded" in line and "no C++ compiler" in line, line
    prebuilt = {k: v for k, v in os.environ.items() if k != "NDCORE_FORCE_JIT"}
    assert "prebuilt: " in _info(prebuilt)
