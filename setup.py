"""Builds the compiled extension ``ndcore._C`` (package metadata lives in pyproject.toml).

The CPU kernel is always built. The CUDA kernel is added when a CUDA toolkit (nvcc) is found and
torch is a CUDA build. Environment switches:

    NDCORE_FORCE_CPU=1    never build the CUDA kernel
    NDCORE_FORCE_CUDA=1   fail when the CUDA kernel cannot be built
    CUDA_HOME             toolkit location (default: /usr/local/cuda when it exists)
    TORCH_CUDA_ARCH_LIST  GPU architectures (default without a visible GPU: DEFAULT_ARCHS)

Sources and flags come from ndcore/ops/build_config.py, which the first-use JIT build
(ndcore/ops/jit.py) shares. Next to the extension goes its build record (torch version, CUDA,
C++ ABI, ...), which ndcore checks before importing it; csrc/ is shipped inside the package
(ndcore/csrc) so that a mismatched install can compile the op at first use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CSRC = Path("csrc")
# SASS for A100 and H100/H200; "+PTX" also embeds compute_90 PTX, which newer GPUs JIT-compile.
# Only for wheels built without a visible GPU: the first-use build targets the GPUs it sees.
DEFAULT_ARCHS = "8.0;9.0+PTX"


def load_build_config():
    """ndcore/ops/build_config.py, loaded by path: ndcore is not installed while it builds."""
    spec = importlib.util.spec_from_file_location(
        "ndcore_build_config", HERE / "ndcore" / "ops" / "build_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cfg = load_build_config()


def want_cuda(torch, nvcc):
    """The nvcc version when the CUDA kernel should be built, else None (or raise if forced)."""
    reason = cfg.cuda_unavailable_reason(torch, nvcc)
    version = None if reason else cfg.checked_nvcc_version(torch, nvcc)
    if reason is None and version is None:
        reason = f"could not read the version of {nvcc}"
    if reason:
        if cfg.env_flag("NDCORE_FORCE_CUDA") and not cfg.env_flag("NDCORE_FORCE_CPU"):
            raise RuntimeError(
                f"ndcore: NDCORE_FORCE_CUDA=1 but the CUDA kernel cannot be built: {reason}"
            )
        print(f"ndcore: building the CPU kernel only ({reason})")
        return None
    return version


def make_extension(nvcc):
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    cuda = want_cuda(torch, nvcc)
    if cuda is not None and not os.environ.get("TORCH_CUDA_ARCH_LIST") \
            and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    flags = cfg.build_flags(torch, cuda)
    kind = CppExtension if cuda is None else CUDAExtension
    compile_args = {"cxx": flags["cxx"]}
    if cuda is not None:
        compile_args["nvcc"] = flags["nvcc"]
    ext = kind(
        "ndcore._C",
        [str(CSRC / name) for name in flags["sources"]],
        define_macros=flags["macros"],
        include_dirs=flags["include_dirs"],
        extra_compile_args=compile_args,
        extra_link_args=flags["ldflags"],
    )
    ext.ndcore_record = cfg.build_record(torch, cuda, cfg.arch_list(torch, cuda is not None),
                                         HERE / CSRC)
    return ext


def record_beside(ext, so_path: str) -> None:
    cfg.write_json(Path(so_path).parent / cfg.RECORD_NAME, ext.ndcore_record)


class BuildPyWithSources(build_py):
    """Also copies csrc/ into the package (ndcore/csrc) for the first-use JIT build. An editable
    install needs no copy: it finds csrc/ beside the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "ndcore" / "csrc"
        shutil.rmtree(target, ignore_errors=True)
        for path in cfg.source_files(HERE / CSRC):
            dest = target / path.relative_to(HERE / CSRC)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    class BuildExtWithRecord(BuildExtension.with_options(use_ninja=True)):
        """Writes each extension's build record beside it (in build/ and, in place, beside the
        copy in the source tree)."""

        def build_extension(self, ext) -> None:
            super().build_extension(ext)
            record_beside(ext, self.get_ext_fullpath(ext.name))

        def copy_extensions_to_source(self) -> None:
            super().copy_extensions_to_source()
            build_py_cmd = self.get_finalized_command("build_py")
            for ext in self.extensions:
                record_beside(ext, self._get_inplace_equivalent(build_py_cmd, ext)[0])

    return BuildExtWithRecord


def main() -> None:
    nvcc = cfg.find_nvcc()  # sets CUDA_HOME before torch.utils.cpp_extension reads it
    setup(
        ext_modules=[make_extension(nvcc)],
        cmdclass={"build_ext": build_ext_class(), "build_py": BuildPyWithSources},
    )


main()
