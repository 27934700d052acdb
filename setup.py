"""Builds the compiled extension ``ndcore._C`` (package metadata lives in pyproject.toml).

The CPU kernel is always built. The CUDA kernel is added when a CUDA toolkit (nvcc) is found and
torch is a CUDA build. Environment switches:

    NDCORE_FORCE_CPU=1    never build the CUDA kernel
    NDCORE_FORCE_CUDA=1   fail when the CUDA kernel cannot be built
    CUDA_HOME             toolkit location (default: /usr/local/cuda when it exists)
    TORCH_CUDA_ARCH_LIST  GPU architectures (default without a visible GPU: DEFAULT_ARCHS)
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path

from setuptools import setup

CSRC = Path("csrc")
DEFAULT_CUDA_HOME = Path("/usr/local/cuda")
# SASS for A100 and H100/H200; "+PTX" also embeds compute_90 PTX, which newer GPUs JIT-compile.
DEFAULT_ARCHS = "8.0;9.0+PTX"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def find_nvcc() -> Path | None:
    """nvcc of CUDA_HOME (set to /usr/local/cuda when unset and present), or None."""
    if not os.environ.get("CUDA_HOME") and (DEFAULT_CUDA_HOME / "bin" / "nvcc").exists():
        # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME then.
        os.environ["CUDA_HOME"] = str(DEFAULT_CUDA_HOME)
    home = os.environ.get("CUDA_HOME")
    nvcc = Path(home) / "bin" / "nvcc" if home else None
    return nvcc if nvcc is not None and nvcc.exists() else None


def nvcc_version(nvcc: Path) -> tuple[int, int] | None:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def want_cuda(torch, nvcc: Path | None) -> tuple[int, int] | None:
    """The nvcc version when the CUDA kernel should be built, else None (or raise if forced)."""
    reason = None
    if env_flag("NDCORE_FORCE_CPU"):
        reason = "NDCORE_FORCE_CPU is set"
    elif torch.version.cuda is None:
        reason = f"torch {torch.__version__} is not a CUDA build"
    elif nvcc is None:
        reason = "no CUDA toolkit found (set CUDA_HOME to a directory with bin/nvcc)"
    version = None if reason else nvcc_version(nvcc)
    if reason is None and version is None:
        reason = f"could not read the version of {nvcc}"
    if reason is None and str(version[0]) != torch.version.cuda.split(".")[0]:
        warnings.warn(
            f"ndcore: nvcc reports CUDA {version[0]}.{version[1]} but torch was built with CUDA "
            f"{torch.version.cuda}; the extension may fail to load. Point CUDA_HOME to a "
            f"matching toolkit."
        )
    if reason:
        if env_flag("NDCORE_FORCE_CUDA") and not env_flag("NDCORE_FORCE_CPU"):
            raise RuntimeError(
                f"ndcore: NDCORE_FORCE_CUDA=1 but the CUDA kernel cannot be built: {reason}"
            )
        print(f"ndcore: building the CPU kernel only ({reason})")
        return None
    return version


def uses_openmp(torch) -> bool:
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


def make_extension(nvcc: Path | None):
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    cuda = want_cuda(torch, nvcc)
    openmp = uses_openmp(torch)
    # No FMA contraction: the kernels must round exactly as the reference's float32 operations.
    # No -std=: torch.utils.cpp_extension picks the standard this torch needs (C++17 or 20).
    cxx = ["-O3", "-ffp-contract=off"]
    macros = []
    if openmp:
        cxx.append("-fopenmp")
        macros.append(("NDCORE_WITH_OPENMP", None))
    # The module, the shared checks, one schema/checks file per op; one kernel file per op and
    # device.
    sources = [str(CSRC / name) for name in (
        "module.cpp", "checks.cpp", "tally.cpp", "iou_histogram.cpp", "select.cpp",
        "cpu/tally_cpu.cpp", "cpu/iou_histogram_cpu.cpp", "cpu/select_cpu.cpp")]
    cuda_sources = [str(CSRC / "cuda" / name) for name in (
        "maps_cuda.cu", "tally_cuda.cu", "iou_histogram_cuda.cu")]
    if cuda is None:
        return CppExtension(
            "ndcore._C",
            sources,
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"] if openmp else [],
        )

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    macros += [("NDCORE_WITH_CUDA", None),
               ("NDCORE_CUDA_VERSION", str(cuda[0] * 1000 + cuda[1] * 10))]
    nvcc_flags = ["-O3", "--fmad=false", "-lineinfo"]  # no FMA: exact reference rounding
    return CUDAExtension(
        "ndcore._C",
        sources + cuda_sources,
        define_macros=macros,
        include_dirs=cusparse_include_dirs(torch),
        extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags},
        extra_link_args=["-fopenmp"] if openmp else [],
    )


def cusparse_include_dirs(torch) -> list[str]:
    """Some ATen CUDA headers include cusparse.h; when the toolkit lacks it, use the copy that
    pip's CUDA wheels (nvidia/cu*/include next to torch) ship."""
    if (Path(os.environ["CUDA_HOME"]) / "include" / "cusparse.h").exists():
        return []
    wheels = Path(torch.__file__).parent.parent / "nvidia"
    return [str(d) for d in sorted(wheels.glob("cu*/include")) if (d / "cusparse.h").exists()]


def main() -> None:
    nvcc = find_nvcc()  # sets CUDA_HOME before torch.utils.cpp_extension reads it
    from torch.utils.cpp_extension import BuildExtension

    setup(
        ext_modules=[make_extension(nvcc)],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )


main()
