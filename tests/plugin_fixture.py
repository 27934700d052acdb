"""Third-party plugin packages written into a temporary directory, as pip would install them.

``make_plugin`` writes a module and its ``<dist>-<version>.dist-info`` (METADATA and
``entry_points.txt``) into a folder; putting that folder on ``sys.path`` (``use_plugins``) or
``PYTHONPATH`` (``plugin_env``) makes ``importlib.metadata`` find the entry points, so plugin
discovery is the real thing, not a registration by hand::

    site = make_plugin(tmp_path, "my-plugin", "my_plugin", SOURCE)   # several may share a folder
    subprocess.run([sys.executable, "-m", "ndcore", "plugins"], env=plugin_env(site))
    with use_plugins(site):
        pm = ndcore.plugins.get_plugin_manager()   # a fresh manager that sees my-plugin
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional


def make_plugin(tmp_dir, dist_name: str, module_name: str, source_code: str,
                entry_points: Optional[Mapping[str, Mapping[str, str]]] = None,
                version: str = "0.1.0") -> Path:
    """Write ``module_name.py`` and the distribution's dist-info into ``tmp_dir``.

    ``entry_points`` defaults to ``{"ndcore": {module_name: module_name}}``. Returns
    ``tmp_dir``, the folder to put on ``sys.path`` / ``PYTHONPATH``.
    """
    site = Path(tmp_dir)
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module_name}.py").write_text(textwrap.dedent(source_code))
    entry_points = entry_points if entry_points is not None else \
        {"ndcore": {module_name: module_name}}
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    (info / "top_level.txt").write_text(module_name + "\n")
    return site


def plugin_env(*sites, base: Optional[Dict[str, str]] = None, **extra: str) -> Dict[str, str]:
    """An environment for ``python -m ndcore`` that finds the plugins in ``sites``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(s) for s in sites] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("COLUMNS", "250")  # rich wraps table cells to the terminal width
    env.update(extra)
    return env


@contextlib.contextmanager
def use_plugins(*sites) -> Iterator[None]:
    """``sites`` on sys.path and a fresh process plugin manager; both undone on exit."""
    from ndcore.plugins import reset_plugin_manager

    before = set(sys.modules)
    sys.path[:0] = [str(s) for s in sites]
    importlib.invalidate_caches()
    reset_plugin_manager()
    try:
        yield
    finally:
        for s in sites:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(s))
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if any(str(getattr(module, "__file__", "") or "").startswith(str(s)) for s in sites):
                del sys.modules[name]
        importlib.invalidate_caches()
        reset_plugin_manager()
