"""The worker's environment: where it is, and the one command that creates it.

mediapipe 0.10.21 pins numpy<2; ndcore runs on numpy 2 and torch. They cannot share one
environment, so mediapipe lives in its own virtual environment (about 1 GB) and the segmenter
talks to a worker process started from it.

Where the worker's Python is looked for, first match wins:

1. ``NDCORE_MEDIAPIPE_PYTHON``: a Python executable, or a virtual environment's folder;
2. ``.venv-mediapipe`` in the current directory or any parent;
3. ``.venv-mediapipe`` in a parent of this package (an editable install inside a checkout).

Create it with ``python -m ndcore_mediapipe.env [FOLDER]`` (default ``./.venv-mediapipe``),
or ``make test-mediapipe`` in ndcore's checkout.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ENV_VAR = "NDCORE_MEDIAPIPE_PYTHON"
DEFAULT_NAME = ".venv-mediapipe"
# mediapipe pins numpy<2 and pulls jax and opencv; the pins there spare pip a long
# back-tracking. The Makefile's test-mediapipe target installs the same file.
REQUIREMENTS_FILE = Path(__file__).with_name("worker-requirements.txt")
REQUIREMENTS = [line.strip() for line in REQUIREMENTS_FILE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
SUPPORTED_PYTHONS = ((3, 9), (3, 12))  # mediapipe 0.10.21's wheels: CPython 3.9 .. 3.12


def _python_in(path: Path) -> Path:
    """A venv folder -> its Python; a file stays as it is."""
    if path.is_dir():
        for rel in ("bin/python", "bin/python3", "Scripts/python.exe"):
            if (path / rel).exists():
                return path / rel
        return path / "bin" / "python"
    return path


def candidates() -> List[Path]:
    """Where a worker environment is looked for, in order (see the module's docstring)."""
    out: List[Path] = []
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        out.append(folder / DEFAULT_NAME)
    package = Path(__file__).resolve().parent
    for folder in package.parents:
        if folder / DEFAULT_NAME not in out:
            out.append(folder / DEFAULT_NAME)
    return out


def default_location() -> Path:
    """Where ``python -m ndcore_mediapipe.env`` creates the environment without a FOLDER."""
    return Path.cwd() / DEFAULT_NAME


def create_command(folder: Optional[Path] = None) -> str:
    """The one command that creates the worker environment (for error messages)."""
    folder = folder or default_location()
    return f"{shlex.quote(sys.executable)} -m ndcore_mediapipe.env {shlex.quote(str(folder))}"


def venv_of(python: Path) -> Path:
    """The virtual environment a worker Python belongs to (for the command that creates it)."""
    python = Path(python)
    if not python.name.startswith("python"):
        return python if python.suffix == "" and not python.exists() else default_location()
    if python.parent.name in ("bin", "Scripts"):
        return python.parent.parent
    return default_location()


def find_worker_python(python: Optional[str] = None) -> str:
    """The worker environment's Python, or one line saying where it was looked for and how to
    create it."""
    from ndcore.plugin_api import PluginError

    given = python or os.environ.get(ENV_VAR)
    if given:
        path = _python_in(Path(given).expanduser())
        if not path.exists():
            venv = venv_of(path)
            source = "" if python else f"{ENV_VAR}="
            raise PluginError(f"no mediapipe worker environment at {source}{given} ({path} "
                              f"does not exist); create it with: {create_command(venv)}")
        return str(path)
    for venv in candidates():
        path = _python_in(venv)
        if path.exists():
            return str(path)
    raise PluginError(
        f"no mediapipe worker environment ({DEFAULT_NAME} in {Path.cwd()} or its parents, or "
        f"{ENV_VAR}); create it with: {create_command()}")


def create(folder: Path, quiet: bool = False) -> Path:
    """A virtual environment in ``folder`` with mediapipe and its pins; returns its Python."""
    version = sys.version_info[:2]
    lo, hi = SUPPORTED_PYTHONS
    if not lo <= version <= hi:
        raise SystemExit(f"mediapipe 0.10.21 has wheels for Python {lo[0]}.{lo[1]}-"
                         f"{hi[0]}.{hi[1]}, this is {version[0]}.{version[1]}: run this "
                         "command with a supported Python")
    folder = Path(folder).resolve()
    if not (folder.is_dir() and _python_in(folder).exists()):
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = _python_in(folder)
    q = ["--quiet"] if quiet else []
    subprocess.run([str(python), "-m", "pip", "install", *q, "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", *q, "-r", str(REQUIREMENTS_FILE)],
                   check=True)
    subprocess.run([str(python), "-I", "-c", "import mediapipe, numpy; "
                    "from mediapipe.python.solutions import face_mesh, selfie_segmentation; "
                    "print('mediapipe', mediapipe.__version__, 'numpy', numpy.__version__)"],
                   check=True)
    return python


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ndcore_mediapipe.env",
                                description="Create the mediapipe worker's environment "
                                            "(" + " ".join(REQUIREMENTS) + ").")
    p.add_argument("folder", nargs="?", default=str(default_location()),
                   help=f"where to create it (default ./{DEFAULT_NAME})")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    python = create(Path(args.folder), args.quiet)
    print(f"worker environment ready: {python}")
    if Path(args.folder).resolve() not in [c.resolve() for c in candidates()]:
        print(f"set {ENV_VAR}={python} so that ndcore finds it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
