"""How ndcore's kernels are compiled: the one definition that setup.py (the prebuilt ndcore._C)
and the first-use JIT build (jit.py) share, and the build record that says what a build matches.

Standard library only, and torch is passed in: setup.py loads this file by path, before ndcore
is installed (importing the package would need its dependencies).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

DEFAULT_CUDA_HOME = Path("/usr/local/cuda")

# The module, the shared checks, one schema/checks file per op; one kernel file per op and
# device (paths relative to csrc/).
SOURCES = ("module.cpp", "checks.cpp", "tally.cpp", "iou_histogram.cpp", "select.cpp",
           "cpu/tally_cpu.cpp", "cpu/iou_histogram_cpu.cpp", "cpu/select_cpu.cpp")
CUDA_SOURCES = ("cuda/maps_cuda.cu", "cuda/tally_cuda.cu", "cuda/iou_histogram_cuda.cu")
# Everything under csrc/ that a build reads (the hash of these keys the JIT cache).
SOURCE_SUFFIXES = (".cpp", ".h", ".cu", ".cuh")

# The build record written next to the prebuilt ndcore/_C*.so (read before importing it).
RECORD_NAME = "_C_build.json"


# The one rule for a switch in the environment (errors.py repeats it for NDCORE_DEBUG: ops and
# errors share a floor and may not import each other; tests/test_jit_build.py checks they agree).
FLAG_OFF = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Whether the switch ``name`` is on: set to anything but "", "0", "false", "no" or "off"
    (in any case, spaces ignored)."""
    return os.environ.get(name, "").strip().lower() not in FLAG_OFF


def find_nvcc() -> Optional[Path]:
    """nvcc of CUDA_HOME (set to /usr/local/cuda when unset and present), or None."""
    if not os.environ.get("CUDA_HOME") and (DEFAULT_CUDA_HOME / "bin" / "nvcc").exists():
        # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME then.
        os.environ["CUDA_HOME"] = str(DEFAULT_CUDA_HOME)
    home = os.environ.get("CUDA_HOME")
    nvcc = Path(home) / "bin" / "nvcc" if home else None
    return nvcc if nvcc is not None and nvcc.exists() else None


def nvcc_version(nvcc: Path) -> Optional[Tuple[int, int]]:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def cuda_unavailable_reason(torch, nvcc: Optional[Path]) -> Optional[str]:
    """Why the CUDA kernels cannot be built here (None when they can)."""
    if env_flag("NDCORE_FORCE_CPU"):
        return "NDCORE_FORCE_CPU is set"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    if nvcc is None:
        return "no CUDA toolkit found (set CUDA_HOME to a directory with bin/nvcc)"
    return None


def checked_nvcc_version(torch, nvcc: Path) -> Optional[Tuple[int, int]]:
    """nvcc's version, warning when its major differs from torch's CUDA (None if unreadable)."""
    version = nvcc_version(nvcc)
    if version is not None and str(version[0]) != torch.version.cuda.split(".")[0]:
        warnings.warn(
            f"ndcore: nvcc reports CUDA {version[0]}.{version[1]} but torch was built with CUDA "
            f"{torch.version.cuda}; the extension may fail to load. Point CUDA_HOME to a "
            f"matching toolkit."
        )
    return version


def uses_openmp(torch) -> bool:
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


def cusparse_include_dirs(torch) -> List[str]:
    """Some ATen CUDA headers include cusparse.h; when the toolkit lacks it, use the copy that
    pip's CUDA wheels (nvidia/cu*/include next to torch) ship."""
    if (Path(os.environ["CUDA_HOME"]) / "include" / "cusparse.h").exists():
        return []
    wheels = Path(torch.__file__).parent.parent / "nvidia"
    return [str(d) for d in sorted(wheels.glob("cu*/include")) if (d / "cusparse.h").exists()]


def build_flags(torch, cuda: Optional[Tuple[int, int]]) -> Dict[str, Any]:
    """Sources (relative to csrc/), macros and flags of a build; ``cuda`` = nvcc's version when
    the CUDA kernels are compiled in, else None."""
    openmp = uses_openmp(torch)
    # No FMA contraction: the kernels must round exactly as the reference's float32 operations.
    # No -std=: torch.utils.cpp_extension picks the standard this torch needs (C++17 or 20).
    # -g0 overrides the -g of Python's CFLAGS (setup.py): debug info for torch's headers made
    # each object 70 times larger and its compile 40% slower, for no use.
    cxx = ["-O3", "-ffp-contract=off", "-g0"]
    macros: List[Tuple[str, Optional[str]]] = []
    if openmp:
        cxx.append("-fopenmp")
        macros.append(("NDCORE_WITH_OPENMP", None))
    flags: Dict[str, Any] = {
        "sources": list(SOURCES), "macros": macros, "cxx": cxx, "nvcc": [],
        "include_dirs": [], "ldflags": ["-fopenmp"] if openmp else [], "openmp": openmp,
    }
    if cuda is not None:
        flags["sources"] += list(CUDA_SOURCES)
        macros += [("NDCORE_WITH_CUDA", None),
                   ("NDCORE_CUDA_VERSION", str(cuda[0] * 1000 + cuda[1] * 10))]
        flags["nvcc"] = ["-O3", "--fmad=false", "-lineinfo"]  # no FMA: exact reference rounding
        flags["include_dirs"] = cusparse_include_dirs(torch)
    return flags


def macro_flags(macros: Sequence[Tuple[str, Optional[str]]]) -> List[str]:
    """``-DNAME`` / ``-DNAME=VALUE``: the macros as compiler flags (for cpp_extension.load)."""
    return [f"-D{name}" if value is None else f"-D{name}={value}" for name, value in macros]


def source_files(csrc: Path) -> List[Path]:
    return sorted(p for p in csrc.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())


def source_hash(csrc: Path) -> str:
    """sha256 over the relative paths and contents of every source file under ``csrc``."""
    h = hashlib.sha256()
    for path in source_files(csrc):
        h.update(path.relative_to(csrc).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def arch_list(torch, cuda: bool) -> str:
    """The GPU architectures a CUDA build targets, as torch.utils.cpp_extension picks them:
    TORCH_CUDA_ARCH_LIST, else the visible GPUs' ("none" without the CUDA kernels)."""
    if not cuda:
        return "none"
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    return ";".join(f"{major}.{minor}" for major, minor in caps) or "none"


def build_record(torch, cuda: Optional[Tuple[int, int]], archs: str,
                 csrc: Path) -> Dict[str, Any]:
    """What a build was compiled against: the fields a prebuilt extension must match to load."""
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "cuda": f"{cuda[0]}.{cuda[1]}" if cuda else None,
        "archs": archs if cuda else "none",
        "sources_sha256": source_hash(csrc),
    }


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Writes to a temporary name, then renames: a reader never sees half a file. (Not
    ndcore.files.replace_atomically: setup.py loads this file before ndcore exists, and ops may
    not import files, a module of the same floor.)"""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
