"""Installing ndcore as a user does: `python -m build` makes an sdist and a wheel (CPU kernels
only, NDCORE_FORCE_CPU=1, to keep it short); each goes into a fresh venv that sees the project's
torch, and runs a small dissection with the compiled op (NDCORE_REQUIRE_EXTENSION=1).

The fresh venvs see the project venv's packages through a .pth to a directory of links to
them, every one but ndcore's own (so nothing resolves to this checkout, and pip needs no
network: --no-index --no-deps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SOURCES = ("csrc/module.cpp", "csrc/cpu/tally_cpu.cpp", "csrc/cuda/tally_cuda.cu",
                  "csrc/tally_common.h")

pytestmark = pytest.mark.slow


def _run(cmd: list, env: dict, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("install")


@pytest.fixture(scope="module")
def env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDCORE_")}
    env.update(NDCORE_FORCE_CPU="1", NDCORE_REQUIRE_EXTENSION="1", PIP_NO_INDEX="1",
               NDCORE_CACHE_DIR=str(work / "jit-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def dists(work: Path, env: dict) -> dict:
    """`python -m build`: the sdist, then the wheel built from it (as pip would from PyPI)."""
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], env, work)
    sdists, wheels = sorted(out.glob("ndcore-*.tar.gz")), sorted(out.glob("ndcore-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def _project_packages(work: Path) -> Path:
    """A directory of links to the project venv's installed packages, ndcore's excluded."""
    links = work / "project-packages"
    if links.exists():
        return links
    links.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("ndcore", "__editable__", "_ndcore")) or name.endswith(".pth"):
            continue
        (links / entry.name).symlink_to(entry)
    return links


def _fresh_venv(work: Path, name: str) -> Path:
    venv = work / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    purelib = subprocess.run([venv / "bin" / "python", "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "project_packages.pth").write_text(f"{_project_packages(work)}\n")
    return venv


def _pip_install(venv: Path, target: Path, env: dict, work: Path) -> None:
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
          "--quiet", "--no-deps", "--no-index", "--no-build-isolation", target], env, work)


def _dissect_and_check(venv: Path, env: dict, work: Path) -> Path:
    """A small dissection with the installed package's prebuilt op (never a JIT build)."""
    out = work / f"run-{venv.name}"
    _run([venv / "bin" / "ndcore", "dissect", "--model", "demo", "--layers", "conv5",
          "--dataset", "synthetic:16", "--out", out, "--workers", "0", "--batch-size", "8",
          "--quiet", "--no-report"], env, work)
    config = json.loads((out / "config.json").read_text())
    assert config["versions"]["extension"]["loaded"] is True, config["versions"]
    info = _run([venv / "bin" / "python", "-c", (
        "import json, ndcore, ndcore.ops as ops\n"
        "print(json.dumps({'file': ndcore.__file__, **ops.extension_info(detailed=True)}))")],
        env, work)
    info = json.loads(info.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(venv)), info  # the installed copy, not the checkout
    assert info["path"] == "prebuilt" and info["where"].startswith(str(venv)), info
    assert info["record"]["torch"] and info["record"]["cuda"] is None, info  # NDCORE_FORCE_CPU
    assert not (work / "jit-cache").exists() or not any((work / "jit-cache").iterdir())
    return Path(info["file"]).parent


def test_dists_ship_the_kernel_sources(dists: dict) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for source in KERNEL_SOURCES + ("setup.py", "ndcore/ops/build_config.py"):
        assert source in names, source
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
    for source in KERNEL_SOURCES:  # package data: ndcore/csrc/...
        assert f"ndcore/{source}" in names, source
    assert "ndcore/_C_build.json" in names
    assert any(n.startswith("ndcore/_C.") and n.endswith(".so") for n in names), names


def test_wheel_installs_and_dissects(dists: dict, env: dict, work: Path) -> None:
    venv = _fresh_venv(work, "venv-wheel")
    _pip_install(venv, dists["wheel"], env, work)
    package = _dissect_and_check(venv, env, work)

    # A build record for another torch: the .so is never imported, the op must be compiled;
    # without a compiler that is the one clear message, or the fallback when accepted.
    record = package / "_C_build.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "torch": "2.0.0+cpu"}))
    empty = work / "empty-bin"
    empty.mkdir(exist_ok=True)
    slow = {**env, "PATH": str(empty), "NDCORE_ALLOW_SLOW": "1"}
    slow.pop("NDCORE_REQUIRE_EXTENSION")
    proc = _run([venv / "bin" / "python", "-W", "ignore", "-c", (
        "import sys, ndcore.ops as ops\n"
        "info = ops.extension_info(detailed=True)\n"
        "assert info['path'] == 'fallback', info\n"
        "assert 'prebuilt for torch 2.0.0+cpu' in info['reason'], info\n"
        "assert 'no C++ compiler' in info['reason'], info\n"
        "assert 'ndcore._C' not in sys.modules  # checked before importing\n"
        "print('ok')")], slow, work)
    assert proc.stdout.strip() == "ok"


def test_sdist_installs_and_dissects(dists: dict, env: dict, work: Path) -> None:
    venv = _fresh_venv(work, "venv-sdist")
    _pip_install(venv, dists["sdist"], env, work)
    package = _dissect_and_check(venv, env, work)
    assert (package / "csrc" / "module.cpp").is_file()
