"""The first-use build of the op: torch.utils.cpp_extension.load (ninja) into a per-user cache.

Used when the prebuilt ndcore._C does not match the running torch, or cannot be imported. One
build per (torch version, CUDA, GPU archs, C++ ABI, Python, hash of csrc/, flags), under
``NDCORE_CACHE_DIR`` (default ``~/.cache/ndcore/ops``, see cache_root). A file lock
makes concurrent processes (torchrun ranks, parallel jobs) compile once: the others wait, then
import the cached build without running a compiler (nor ninja). A failed build leaves a marker:
later processes fail at once with the same message (or fall back under NDCORE_ALLOW_SLOW=1)
instead of compiling again, until the directory is deleted.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, Optional, Tuple

from . import build_config as cfg

MODULE_NAME = "ndcore_C"  # TORCH_EXTENSION_NAME of the JIT build (the prebuilt is ndcore._C)
MARKER = "ndcore_build.json"  # written last: the build in this directory is complete
FAILED_MARKER = "ndcore_build_failed.json"  # the build in this directory failed: do not retry
CACHE_ENV = "NDCORE_CACHE_DIR"


class ExtensionUnavailableError(ImportError):
    """The compiled op cannot be loaded or compiled here; the message (one line) says what is
    missing and how to fix it."""

    one_line_message = True  # the CLI prints it as is, as an error of the user's setup


def cache_home() -> Path:
    """ndcore's per-user cache: NDCORE_CACHE, else $XDG_CACHE_HOME/ndcore (an absolute path, as
    the XDG spec wants), else ~/.cache/ndcore. JIT builds go to ops/ in it, the synthetic probe
    sets to synthetic/ (ndcore.data.synthetic.default_cache_dir)."""
    if os.environ.get("NDCORE_CACHE"):
        return Path(os.environ["NDCORE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "ndcore"


def cache_root() -> Path:
    """Where JIT builds go: NDCORE_CACHE_DIR, else ops/ in ndcore's cache (cache_home)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return cache_home() / "ops"


def find_csrc() -> Path:
    """The kernel sources: ndcore/csrc in an installed package, csrc/ beside it in a clone."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "csrc", package.parent / "csrc"):
        if (candidate / cfg.SOURCES[0]).is_file():
            return candidate
    raise ExtensionUnavailableError(
        f"ndcore: cannot compile the op: its C++ sources are missing (looked in {package / 'csrc'}"
        f" and {package.parent / 'csrc'}); reinstall ndcore (pip install --force-reinstall "
        f"ndcore) or set NDCORE_ALLOW_SLOW=1 to run the slow pure-PyTorch ops."
    )


def wants_cuda(torch) -> bool:
    """Compile the CUDA kernels: a GPU is visible to a CUDA torch (and NDCORE_FORCE_CPU unset)."""
    return (not cfg.env_flag("NDCORE_FORCE_CPU") and torch.version.cuda is not None
            and torch.cuda.is_available())


def _slow_hint() -> str:
    return "or set NDCORE_ALLOW_SLOW=1 to accept the pure-PyTorch ops (100 to 1,700 times slower)"


def check_toolchain(torch, cuda: bool,
                    reason: str) -> Tuple[Optional[Path], Optional[Tuple[int, int]]]:
    """Finds the C++ compiler, ninja and (for ``cuda``) nvcc, or raises one clear error naming
    what is missing and how to install it (and ``reason``: why the op must be compiled).
    Returns (nvcc, its version) for CUDA builds."""
    first_use = f"at first use (no usable prebuilt op: {reason})"
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        where = f"CXX={cxx}" if "CXX" in os.environ else "c++ on PATH"
        raise ExtensionUnavailableError(
            f"ndcore: cannot compile the op {first_use}: no C++ compiler ({where} not found). "
            f"Install one (Debian/Ubuntu: apt install g++; Fedora: dnf install gcc-c++; conda: "
            f"conda install -c conda-forge cxx-compiler) or point CXX to it, {_slow_hint()}."
        )
    if _ninja_dir() is None:
        raise ExtensionUnavailableError(
            f"ndcore: cannot compile the op {first_use}: ninja is missing. Install it "
            f"(pip install ninja), {_slow_hint()}."
        )
    if not cuda:
        return None, None
    nvcc = cfg.find_nvcc()
    version = cfg.checked_nvcc_version(torch, nvcc) if nvcc is not None else None
    if version is None:
        raise ExtensionUnavailableError(
            f"ndcore: cannot compile the CUDA kernels {first_use}: no CUDA toolkit "
            f"(nvcc; CUDA_HOME={os.environ.get('CUDA_HOME', 'unset')}). Install the CUDA "
            f"{torch.version.cuda} toolkit (https://developer.nvidia.com/cuda-downloads, or conda "
            f"install -c nvidia cuda-toolkit={torch.version.cuda}) and set CUDA_HOME to it, set "
            f"NDCORE_FORCE_CPU=1 for the CPU kernels only, {_slow_hint()}."
        )
    return nvcc, version


def _ninja_dir() -> Optional[str]:
    """A directory holding ninja: PATH's, else the ninja wheel's (a venv not on PATH)."""
    found = shutil.which("ninja")
    if found:
        return str(Path(found).parent)
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return None
    bin_dir = getattr(ninja, "BIN_DIR", None)
    return bin_dir if bin_dir and (Path(bin_dir) / "ninja").exists() else None


def build_key(torch, flags: Dict[str, Any], record: Dict[str, Any]) -> str:
    """The cache directory's name: readable prefix, then a hash of everything a build depends on."""
    everything = {**record, "python": sys.version.split()[0], "flags": flags,
                  "cxx": os.environ.get("CXX", "c++")}
    digest = hashlib.sha256(json.dumps(everything, sort_keys=True).encode()).hexdigest()[:16]
    device = f"cu{record['cuda'].replace('.', '')}" if record["cuda"] else "cpu"
    py = sysconfig.get_config_var("SOABI") or f"py{sys.version_info[0]}{sys.version_info[1]}"
    return f"torch{torch.__version__.replace('+', '_')}-{device}-{py}-{digest}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``; says on stderr when it has to wait for another process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"ndcore: waiting for another process compiling the op (lock {path})",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def import_built(so_path: Path) -> ModuleType:
    """Imports a built extension module from its file (no compiler, no ninja); a file that does
    not import is a broken build: ExtensionUnavailableError, saying to delete its directory."""
    try:
        spec = importlib.util.spec_from_file_location(MODULE_NAME, so_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no loader for {so_path.name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise ExtensionUnavailableError(
            f"ndcore: the op compiled at first use into {so_path.parent} does not import "
            f"({type(exc).__name__}: {reason}); delete {so_path.parent} to rebuild it, "
            f"{_slow_hint()}."
        ) from exc
    return module


def load_or_build(reason: str) -> Tuple[ModuleType, Dict[str, Any]]:
    """The op compiled for this torch: from the cache, or compiled now (once, under the lock).

    ``reason`` says why the prebuilt extension is not used (for the status line). Returns the
    module and what was loaded: {"where": cache directory, "compiled": True when built now,
    "seconds", "record"}. Raises ExtensionUnavailableError when the toolchain is missing, the build
    fails or failed in an earlier process (the message names the log), or the cached build does
    not import.
    """
    import torch

    cuda = wants_cuda(torch)
    csrc = find_csrc()
    _nvcc, cuda_version = check_toolchain(torch, cuda, reason)
    flags = cfg.build_flags(torch, cuda_version)
    record = cfg.build_record(torch, cuda_version, cfg.arch_list(torch, cuda), csrc)
    build_dir = cache_root() / build_key(torch, flags, record)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExtensionUnavailableError(
            f"ndcore: cannot compile the op: its cache {build_dir.parent} is not writable "
            f"({exc.strerror}); set {CACHE_ENV} to a writable directory, {_slow_hint()}."
        ) from exc
    marker = build_dir / MARKER
    with file_lock(build_dir.with_name(build_dir.name + ".lock")):
        done = _read_marker(marker)
        if done is not None:
            so_path = build_dir / done["module_file"]
            if so_path.is_file():
                return import_built(so_path), {"where": str(build_dir), "compiled": False,
                                               "seconds": 0.0, "record": record}
        failed = _read_failure(build_dir, record["sources_sha256"])
        if failed is not None:  # compiling again would fail again, minutes later
            raise ExtensionUnavailableError(_failed_message(build_dir, failed, earlier=True))
        kernels = f"CPU and CUDA {record['cuda']} kernels for {record['archs']}" if cuda \
            else "CPU kernels"
        print(f"ndcore: compiling the op for torch {torch.__version__} ({kernels}) into "
              f"{build_dir}, once ({reason}); this takes a minute or a few",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        module = _compile(flags, csrc, build_dir, cuda, record["sources_sha256"])
        seconds = time.perf_counter() - start
        cfg.write_json(marker, {**record, "module_file": Path(module.__file__).name,
                                "compile_seconds": round(seconds, 1)})
        (build_dir / FAILED_MARKER).unlink(missing_ok=True)  # one of other sources, if any
    return module, {"where": str(build_dir), "compiled": True, "seconds": seconds,
                    "record": record}


def _read_marker(marker: Path) -> Optional[Dict[str, Any]]:
    """The completed build's marker, or None (absent or damaged: build again)."""
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("module_file"), str) else None


def _read_failure(build_dir: Path, sources_sha256: str) -> Optional[Path]:
    """The log of an earlier failed build of these sources in ``build_dir``, or None."""
    try:
        failed = json.loads((build_dir / FAILED_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(failed, dict) or failed.get("sources_sha256") != sources_sha256:
        return None
    return Path(str(failed.get("log") or build_dir / "build.log"))


def _failed_message(build_dir: Path, log: Path, earlier: bool = False) -> str:
    when = " in an earlier run" if earlier else ""
    return (f"ndcore: compiling the op failed{when} (compiler output in {log}); check the "
            f"compiler and CUDA toolkit match this torch, delete {build_dir} to retry, "
            f"{_slow_hint()}.")


def _compile(flags: Dict[str, Any], csrc: Path, build_dir: Path, cuda: bool,
             sources_sha256: str) -> ModuleType:
    """cpp_extension.load with setup.py's sources and flags; a failure names its log file and
    leaves a marker (FAILED_MARKER) so that later processes do not compile again."""
    from torch.utils import cpp_extension

    build_dir.mkdir(parents=True, exist_ok=True)
    macros = cfg.macro_flags(flags["macros"])
    path_before = os.environ.get("PATH", "")
    ninja_dir = _ninja_dir()
    if ninja_dir and shutil.which("ninja") is None:  # cpp_extension runs `ninja` from PATH
        os.environ["PATH"] = os.pathsep.join([ninja_dir, path_before])
    try:
        return cpp_extension.load(
            name=MODULE_NAME,
            sources=[str(csrc / name) for name in flags["sources"]],
            extra_cflags=flags["cxx"] + macros,
            extra_cuda_cflags=flags["nvcc"] + macros,
            extra_ldflags=flags["ldflags"],
            extra_include_paths=flags["include_dirs"],
            build_directory=str(build_dir),
            with_cuda=cuda,
            verbose=False,
        )
    except Exception as exc:  # the compiler's output is in the message: keep it in a log
        log = build_dir / "build.log"
        log.write_text(f"{type(exc).__name__}: {exc}\n")
        cfg.write_json(build_dir / FAILED_MARKER, {"sources_sha256": sources_sha256,
                                                   "log": str(log)})
        raise ExtensionUnavailableError(_failed_message(build_dir, log)) from exc
    finally:
        os.environ["PATH"] = path_before
