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
import warnings
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


def _unavailable(why: str) -> None:
    """Skip where the toolchain or a built clone is missing; under `make test`
    (NDCORE_REQUIRE_EXTENSION=1), which has both, fail: a skip there would hide a failure."""
    from ndcore.errors import env_flag

    if env_flag("NDCORE_REQUIRE_EXTENSION"):
        pytest.fail(f"{why}, but `make test` provides it")
    pytest.skip(why)


def _tool(name: str) -> str:
    """The c++ or ninja a first-use build would run (ninja: PATH's, else the ninja wheel's)."""
    from ndcore.ops import jit

    if name == "ninja":
        found = jit._ninja_dir()
        found = found and str(Path(found) / "ninja")
    else:
        found = shutil.which(name)
    if not found:
        _unavailable(f"{name} is not installed")
    return found


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
        real = _tool(tool)
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


# ------------------------------------------------ a failed build is not retried by every process


@pytest.fixture
def failing_cxx(tmp_path: Path) -> tuple[Path, Path]:
    """A c++ that logs its calls and fails at once (a broken toolchain, without a real compile)."""
    _tool("ninja")
    cxx, log = tmp_path / "bin" / "c++", tmp_path / "cxx-calls.log"
    cxx.parent.mkdir()
    cxx.write_text(f'#!/bin/sh\necho "c++ $*" >> "{log}"\nexit 1\n')
    cxx.chmod(0o755)
    return cxx, log


def test_failed_compile_is_not_retried(failing_cxx, tmp_path: Path) -> None:
    cxx, log = failing_cxx
    env = {**_base_env(tmp_path / "cache", os.environ.get("PATH", "")), "CXX": str(cxx)}
    run = [sys.executable, "-c", "import ndcore.ops"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode != 0 and "compiling the op failed" in first.stderr, first.stderr
    assert _calls(log), "premise: the first process ran the (failing) compiler"
    build = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
    log.unlink()

    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode != 0, second.stdout + second.stderr
    assert _calls(log) == [], _calls(log)  # failed fast: no compiler
    assert "ndcore: compiling the op for" not in second.stderr, second.stderr
    error = next(line for line in second.stderr.splitlines() if "compiling the op failed" in line)
    assert f"delete {build} to retry" in error and str(build / "build.log") in error, error

    env["NDCORE_ALLOW_SLOW"] = "1"
    slow = subprocess.run([sys.executable, "-c", "import ndcore.ops as o; "
                           "print(o.extension_info(detailed=True)['path'])"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert slow.returncode == 0 and slow.stdout.split() == ["fallback"], slow.stdout + slow.stderr
    assert "compiling the op failed" in slow.stderr and "falling back" in slow.stderr, slow.stderr
    assert _calls(log) == [], _calls(log)


def test_cached_build_that_does_not_import(tmp_path: Path, monkeypatch) -> None:
    """A cached build whose module does not import is a failed build: a one-line
    ExtensionUnavailableError saying to delete the directory, and the slow path when accepted."""
    from ndcore.ops import extension, jit

    for tool in ("c++", "ninja"):
        _tool(tool)
    for name in ("CXX", "NDCORE_REQUIRE_EXTENSION", "NDCORE_ALLOW_SLOW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NDCORE_FORCE_CPU", "1")
    monkeypatch.setenv("NDCORE_FORCE_JIT", "1")
    monkeypatch.setenv("NDCORE_CACHE_DIR", str(tmp_path / "cache"))

    def fake_compile(flags, csrc, build_dir, cuda, sha):  # "builds" a module that won't load
        so = build_dir / "ndcore_C.so"
        so.write_bytes(b"not an ELF file")
        return type("Built", (), {"__file__": str(so)})

    monkeypatch.setattr(jit, "_compile", fake_compile)
    jit.load_or_build("test")  # writes the completion marker
    build = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
    with pytest.raises(jit.ExtensionUnavailableError) as caught:
        jit.load_or_build("test")
    message = str(caught.value)
    assert "\n" not in message and f"delete {build}" in message, message
    assert "NDCORE_ALLOW_SLOW=1" in message, message

    monkeypatch.setenv("NDCORE_ALLOW_SLOW", "1")
    with pytest.warns(RuntimeWarning, match="falling back"):
        module, how = extension._load_extension()
    assert module is None and how["path"] == "fallback" and "does not import" in how["reason"]


# ------------------------------------------------------------- one rule for a switch, a cache


FLAGS = {"": False, "0": False, "false": False, "False": False, "no": False, " OFF ": False,
         "off": False, "1": True, "true": True, "yes": True, "on": True, "2": True, "Y": True}


def test_env_flags_follow_one_rule(monkeypatch) -> None:
    """Off: unset, "", "0", "false", "no", "off" (any case); anything else is on. ops and errors
    keep one copy each of the rule (same floor): both must read every value the same way."""
    from ndcore import errors
    from ndcore.ops import build_config

    monkeypatch.delenv("NDCORE_TEST_FLAG", raising=False)
    assert not build_config.env_flag("NDCORE_TEST_FLAG") and not errors.env_flag("NDCORE_TEST_FLAG")
    for value, on in FLAGS.items():
        monkeypatch.setenv("NDCORE_TEST_FLAG", value)
        assert build_config.env_flag("NDCORE_TEST_FLAG") is on, repr(value)
        assert errors.env_flag("NDCORE_TEST_FLAG") is on, repr(value)
        monkeypatch.setenv("NDCORE_DEBUG", value)
        assert errors.debug_enabled() is on, repr(value)


def test_allow_slow_no_refuses_the_slow_ops(tmp_path: Path) -> None:
    env = _base_env(tmp_path / "cache", _no_compiler_path(tmp_path))
    env["NDCORE_ALLOW_SLOW"] = "no"
    proc = subprocess.run([sys.executable, "-c", "import ndcore.ops"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no C++ compiler" in proc.stderr, proc.stdout + proc.stderr
    assert "falling back" not in proc.stderr, proc.stderr


def test_one_cache_root_for_ops_and_synthetic(tmp_path: Path, monkeypatch) -> None:
    from ndcore.data.synthetic import default_cache_dir
    from ndcore.ops.jit import cache_root

    for name in ("NDCORE_CACHE", "NDCORE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home" / ".cache" / "ndcore"
    assert (default_cache_dir(), cache_root()) == (home / "synthetic", home / "ops")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert (default_cache_dir(), cache_root()) == (home / "synthetic", home / "ops")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    xdg = tmp_path / "xdg" / "ndcore"
    assert (default_cache_dir(), cache_root()) == (xdg / "synthetic", xdg / "ops")
    monkeypatch.setenv("NDCORE_CACHE", str(tmp_path / "mine"))
    mine = tmp_path / "mine"
    assert (default_cache_dir(), cache_root()) == (mine / "synthetic", mine / "ops")
    monkeypatch.setenv("NDCORE_CACHE_DIR", str(tmp_path / "ops-only"))
    assert (default_cache_dir(), cache_root()) == (mine / "synthetic", tmp_path / "ops-only")


# ------------------------------------------------- a prebuilt op built from other sources


def test_stale_prebuilt_warns_and_is_still_used(monkeypatch) -> None:
    """In a clone, a prebuilt ndcore._C whose record names other sources than csrc/ warns in one
    line (rebuild with make setup) but is still used: no silent first-use build."""
    import json

    import torch

    import ndcore
    from ndcore.ops import build_config, extension

    package = Path(ndcore.__file__).parent
    record_path = package / build_config.RECORD_NAME
    if not (package.parent / "csrc" / "module.cpp").is_file() or not record_path.is_file():
        _unavailable("not a built clone (no csrc/ beside the package, or no build record)")
    record = json.loads(record_path.read_text())
    assert extension.prebuilt_mismatch(record, torch) is None  # premise: the prebuilt serves
    monkeypatch.delenv("NDCORE_FORCE_JIT", raising=False)
    monkeypatch.setattr(build_config, "source_hash", lambda csrc: "0" * 64)
    with pytest.warns(RuntimeWarning) as caught:
        module, how = extension._try_prebuilt()
    assert module is not None and how["where"].endswith(".so"), how
    texts = [str(w.message) for w in caught if "other sources" in str(w.message)]
    assert len(texts) == 1 and "\n" not in texts[0], texts
    assert "make setup" in texts[0] and "pip install --no-build-isolation -e ." in texts[0]

    monkeypatch.setattr(build_config, "source_hash", lambda csrc: record["sources_sha256"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module, _ = extension._try_prebuilt()
    assert module is not None
