"""Loading of the compiled op (importing it registers torch.ops.ndcore.*), by one of three paths:

- ``prebuilt``: ndcore._C, built by setup.py, when its build record (_C_build.json beside it)
  matches the running torch (version, CUDA, C++ ABI) and the visible GPUs' architectures. The
  record is checked BEFORE importing: a mismatched .so can fail with undefined symbols, or worse.
  In a clone, a record of other sources than csrc/ only warns (rebuilding is `make setup`'s job).
- ``jit``: otherwise compiled once at first use into a per-user cache (jit.py), and reused.
- ``fallback``: the pure-PyTorch references (100 to 1,700 times slower), only when the user
  accepts them with ``NDCORE_ALLOW_SLOW=1`` (with a warning), or when the import of ndcore._C
  is blocked on purpose (``sys.modules["ndcore._C"] = None``; also with a warning). Otherwise a
  failed build is an ImportError that says what is missing and how to install it.

``NDCORE_REQUIRE_EXTENSION=1`` (CI) makes every fallback an ImportError. ``NDCORE_FORCE_JIT=1``
ignores the prebuilt extension.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from . import build_config as cfg
from .jit import ExtensionUnavailableError, load_or_build

REQUIRE_ENV = "NDCORE_REQUIRE_EXTENSION"
ALLOW_SLOW_ENV = "NDCORE_ALLOW_SLOW"
FORCE_JIT_ENV = "NDCORE_FORCE_JIT"
PREBUILT = "ndcore._C"


def arch_runs_on(archs: str, capability: Tuple[int, int]) -> bool:
    """Whether code compiled for ``archs`` (TORCH_CUDA_ARCH_LIST syntax, e.g. "8.0;9.0+PTX")
    runs on a GPU of ``capability``: SASS for X.Y runs on X.Z with Z >= Y; PTX for X.Y on any
    capability >= X.Y (the driver compiles it)."""
    for entry in archs.replace(",", ";").replace(" ", ";").split(";"):
        entry = entry.strip()
        if not entry or not entry[0].isdigit():
            continue
        ptx = entry.endswith("+PTX")
        major, _, minor = entry.removesuffix("+PTX").partition(".")
        try:
            arch = (int(major), int(minor.rstrip("abf") or 0))
        except ValueError:
            continue
        if (ptx and capability >= arch) or (arch[0] == capability[0] and capability[1] >= arch[1]):
            return True
    return False


def prebuilt_mismatch(record: Dict[str, Any], torch) -> Optional[str]:
    """Why a prebuilt extension with this build record cannot serve the running torch (None
    when it can)."""
    running = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI)}
    for key, what in (("torch", "torch"), ("torch_cuda", "torch's CUDA"),
                      ("cxx11_abi", "C++ ABI (_GLIBCXX_USE_CXX11_ABI)")):
        if record.get(key) != running[key]:
            return (f"prebuilt for {what} {record.get(key)}, running {running[key]}")
    if cfg.env_flag("NDCORE_FORCE_CPU") or torch.version.cuda is None \
            or not torch.cuda.is_available():
        return None
    if not record.get("cuda"):
        return "prebuilt without CUDA kernels, and a GPU is visible"
    for i in range(torch.cuda.device_count()):
        cap = torch.cuda.get_device_capability(i)
        if not arch_runs_on(record.get("archs", ""), cap):
            return (f"prebuilt CUDA kernels target {record.get('archs')}, not GPU {i}'s "
                    f"sm_{cap[0]}{cap[1]}")
    return None


def _try_prebuilt() -> Tuple[Optional[Any], Dict[str, Any]]:
    """ndcore._C when it exists and matches the running torch; else (None, {"reason": why})."""
    if cfg.env_flag(FORCE_JIT_ENV):
        return None, {"reason": f"{FORCE_JIT_ENV} is set"}
    spec = importlib.util.find_spec(PREBUILT)
    if spec is None or not spec.origin:
        return None, {"reason": "no prebuilt ndcore._C in the package"}
    so_path = Path(spec.origin)
    record_path = so_path.parent / cfg.RECORD_NAME
    record = None
    if record_path.is_file():
        import torch

        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as exc:  # never guess: compile instead
            return None, {"reason": f"unreadable build record {record_path} ({exc})",
                          "prebuilt": str(so_path)}
        why = prebuilt_mismatch(record, torch)
        if why:
            return None, {"reason": why, "prebuilt": str(so_path)}
    # else: built by an older setup.py that wrote no record; importing is the only check left
    try:
        from ndcore import _C  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, {"reason": f"prebuilt ndcore._C failed to import: {type(exc).__name__}: "
                                f"{exc}", "prebuilt": str(so_path)}
    if record is not None:
        _warn_if_stale(record, so_path)
    return _C, {"where": str(so_path), "record": record}


def _warn_if_stale(record: Dict[str, Any], so_path: Path) -> None:
    """In a clone (csrc/ beside the package), warns when ndcore._C was built from other sources.
    It is still used: rebuilding a development checkout is `make setup`'s job, not a silent JIT
    build's."""
    csrc = so_path.parent.parent / "csrc"
    if not (csrc / cfg.SOURCES[0]).is_file() or not record.get("sources_sha256"):
        return
    if cfg.source_hash(csrc) != record["sources_sha256"]:
        warnings.warn(
            f"ndcore: ndcore._C ({so_path}) was built from other sources than {csrc}; rebuild "
            f"with `make setup` or `pip install --no-build-isolation -e .`",
            RuntimeWarning, stacklevel=5)


def _fallback(reason: str, blocked: bool = False) -> Tuple[None, Dict[str, Any]]:
    """The pure-PyTorch ops, with a warning; an ImportError when the extension is required or
    (unless blocked on purpose) the slow path was not accepted."""
    if cfg.env_flag(REQUIRE_ENV):
        raise ExtensionUnavailableError(
            f"ndcore: the compiled op is required ({REQUIRE_ENV} is set) but could not be "
            f"loaded: {reason}")
    warnings.warn(
        f"ndcore: compiled op not available ({reason}); falling back to the slow pure-PyTorch "
        f"ops{'' if blocked else f' ({ALLOW_SLOW_ENV} is set)'}.",
        RuntimeWarning,
        stacklevel=5,
    )
    return None, {"path": "fallback", "reason": reason}


def _load_extension() -> Tuple[Optional[Any], Dict[str, Any]]:
    """The op's module and how it was loaded: {"path": prebuilt|jit|fallback, "where",
    "reason" (why not prebuilt / why the fallback), "record" (what it was built against)}."""
    if PREBUILT in sys.modules and sys.modules[PREBUILT] is None:
        return _fallback("the import of ndcore._C is blocked (sys.modules)", blocked=True)
    module, how = _try_prebuilt()
    if module is not None:
        return module, {"path": "prebuilt", "reason": None, **how}
    try:
        module, built = load_or_build(how["reason"])
    except ExtensionUnavailableError as exc:
        if not (cfg.env_flag(ALLOW_SLOW_ENV) or cfg.env_flag(REQUIRE_ENV)):
            raise
        return _fallback(f"{how['reason']}; {exc}")
    return module, {"path": "jit", **how, **built}


_C, _HOW = _load_extension()


def extension_info(detailed: bool = False) -> Dict[str, Any]:
    """What was compiled: loaded, error (why not loaded, or None), cuda, openmp, cuda_version.

    ``detailed=True`` adds how the op was loaded: path ("prebuilt", "jit" or "fallback"), where
    (the prebuilt .so, or the JIT cache directory), reason (why the prebuilt was not used / why
    the fallback; None for prebuilt), record (what the build was compiled against: torch, CUDA,
    C++ ABI, GPU archs, hash of the sources; None for a prebuilt without one) and cache_dir.
    """
    if _C is None:
        info: Dict[str, Any] = {"loaded": False, "error": _HOW["reason"], "cuda": False,
                                "openmp": False, "cuda_version": None}
    else:
        info = {
            "loaded": True,
            "error": None,
            "cuda": bool(_C.compiled_with_cuda()),
            "openmp": bool(_C.compiled_with_openmp()),
            "cuda_version": _C.cuda_version() or None,
        }
    if detailed:
        from .jit import cache_root

        info.update(path=_HOW["path"], where=_HOW.get("where"), reason=_HOW.get("reason"),
                    record=_HOW.get("record"), cache_dir=str(cache_root()))
    return info
