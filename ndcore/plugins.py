"""Plugin manager: discovers plugins through the ``ndcore`` entry-point group.

Built-in adapters (``plugins/ndcore_builtins``) are registered through the same entry points a
third-party package uses. A plugin that fails to import is recorded with its error and reported
by ``ndcore plugins``; the others keep working.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import pluggy

from . import hookspecs
from .errors import PluginError, suggest

ENTRY_POINT_GROUP = "ndcore"


@dataclass
class DatasetRequest:
    """What a user asked of a dataset, handed to a dataset factory with the spec's target."""

    categories: Optional[Sequence[str]] = None
    max_images: Optional[int] = None
    options: Dict[str, str] = field(default_factory=dict)


@dataclass
class Registration:
    name: str
    factory: Callable
    description: str
    plugin: str


@dataclass
class PluginInfo:
    name: str  # entry-point name
    module: str
    distribution: str
    version: str
    models: List[str] = field(default_factory=list)
    datasets: List[str] = field(default_factory=list)
    error: Optional[str] = None
    traceback: Optional[str] = None


class PluginManager:
    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("ndcore")
        self.pm.add_hookspecs(hookspecs)
        self.infos: Dict[str, PluginInfo] = {}
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name, module=ep.value,
                distribution=dist.metadata["Name"] if dist else "?",
                version=dist.version if dist else "?",
            )
            self.infos[ep.name] = info
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as e:  # a broken plugin must not take the tool down
                info.error = f"{type(e).__name__}: {e}"
                info.traceback = traceback.format_exc()

    def register(self, plugin, name: str, version: str = "") -> None:
        """Register a plugin object directly (tests, notebooks)."""
        self.pm.register(plugin, name=name)
        self.infos[name] = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__name__),
                                      "(registered in process)", version)

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)

    def _collect(self, hook_name: str) -> Dict[str, Registration]:
        found: Dict[str, Registration] = {}
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(name: str, factory: Callable, description: str = "",
                         _plugin=plugin_name) -> None:
                if name in found and found[name].plugin != _plugin:
                    raise PluginError(f"adapter {name!r} registered by both "
                                      f"{found[name].plugin} and {_plugin}")
                found[name] = Registration(name, factory, description, _plugin)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as e:
                info = self.infos.get(plugin_name)
                if info is not None:
                    info.error = f"{hook_name} failed: {type(e).__name__}: {e}"
        for reg in found.values():
            info = self.infos.get(reg.plugin)
            if info is not None:
                target = info.models if hook_name == "ndcore_register_models" else info.datasets
                if reg.name not in target:
                    target.append(reg.name)
        return found

    def models(self) -> Dict[str, Registration]:
        return self._collect("ndcore_register_models")

    def datasets(self) -> Dict[str, Registration]:
        return self._collect("ndcore_register_datasets")

    def plugin_infos(self) -> List[PluginInfo]:
        self.models()
        self.datasets()
        return sorted(self.infos.values(), key=lambda i: i.name)

    def _lookup(self, kind: str, spec: str, table: Dict[str, Registration]):
        name, _, target = spec.partition(":")
        if name not in table:
            broken = [i.name for i in self.infos.values() if i.error]
            hint = f"; plugins that failed to load: {', '.join(broken)}" if broken else ""
            raise PluginError(
                f"no {kind} adapter {name!r} (spec {spec!r}){suggest(name, table)}; "
                f"available: {', '.join(sorted(table)) or 'none'}{hint}"
            )
        return table[name], target

    def build_model(self, spec: str, request):
        reg, target = self._lookup("model", spec, self.models())
        return reg.factory(target, request)

    def build_dataset(self, spec: str, request: DatasetRequest):
        reg, target = self._lookup("dataset", spec, self.datasets())
        return reg.factory(target, request)


_default: Optional[PluginManager] = None


def get_plugin_manager() -> PluginManager:
    global _default
    if _default is None:
        _default = PluginManager()
    return _default
