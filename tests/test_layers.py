"""The package's floors (docs/architecture.md), enforced: the import-linter contract in
pyproject.toml (an import of the package root counts as one of everything the root imports),
plus what a layers contract cannot say: every module has a floor, and plugins import only
ndcore.plugin_api."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = {"ndcore_builtins": ROOT / "plugins",
               "ndcore_example_plugin": ROOT / "plugins" / "ndcore-example-plugin",
               "ndcore_mediapipe": ROOT / "plugins" / "ndcore-mediapipe"}
# Floors that may import the package root (``ndcore/__init__``): the API floor and above.
ROOT_IMPORTERS = {"ndcore.__main__", "ndcore.cli", "ndcore.report", "ndcore.paint", "ndcore.api",
                  "ndcore.plugin_api"}


def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (floors,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return floors


def floor_modules() -> list:
    return [m.strip() for layer in contract()["layers"] for m in layer.replace(":", "|").split("|")]


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package found under ``root`` (a copy, or the repository)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command; sys.exit(lint_imports_command())",
                           "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_floors_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_every_module_of_the_package_has_a_floor():
    top = {p.stem if p.is_file() else p.name for p in (ROOT / "ndcore").iterdir()
           if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert top, "no modules found"
    missing = sorted(set(f"ndcore.{name}" for name in top) - set(floor_modules()))
    assert not missing, f"give these a floor in pyproject.toml's import-linter contract: {missing}"


def test_every_subpackage_is_packaged():
    """A wheel or sdist holds only the packages pyproject.toml lists: a new subpackage missing
    there works from a clone and fails once installed."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "ndcore").rglob("__init__.py")}
    assert "ndcore.engine.statistics" in found  # premise: subpackages are found
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"


def test_plugins_import_only_the_plugin_api(monkeypatch):
    for path in PLUGIN_DIRS.values():
        monkeypatch.syspath_prepend(str(path))
    graph = grimp.build_graph("ndcore", *PLUGIN_DIRS)
    used = set()
    for plugin in PLUGIN_DIRS:
        for module in graph.find_descendants(plugin) | {plugin}:
            for imported in graph.find_modules_directly_imported_by(module):
                if imported == "ndcore" or imported.startswith("ndcore."):
                    used.add((module, imported))
    assert used, "premise: the plugins import ndcore at all"
    wrong = sorted(pair for pair in used if pair[1] != "ndcore.plugin_api")
    assert not wrong, f"plugins must import only ndcore.plugin_api: {wrong}"


@pytest.mark.slow
@pytest.mark.parametrize("where, line", [
    # a function-level import that climbs a floor: the engine reaching for the report
    ("ndcore/engine/run.py", "\n\ndef _climb():\n    from ..report.html import write_report\n"),
    # a module-level one: the lowest floor importing the CLI
    ("ndcore/ops/reference.py", "\nimport ndcore.cli.tables  # noqa\n"),
])
def test_an_import_that_climbs_a_floor_breaks_the_contract(tmp_path, where, line):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "ndcore", copy / "ndcore", ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    assert lint(copy).returncode == 0  # premise: the copy is clean
    with open(copy / where, "a") as f:
        f.write(line)
    done = lint(copy)
    assert done.returncode != 0 and "BROKEN" in done.stdout.upper(), done.stdout + done.stderr
