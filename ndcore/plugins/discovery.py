"""Finding plugins: the ``ndcore`` entry points, ndcore's own (``plugins/ndcore_builtins``) first,
each imported on its own, so that one that fails to import is recorded rather than fatal."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import one_line, traceback_text
from .adapters import canonical_name

ENTRY_POINT_GROUP = "ndcore"
BUILTIN_DISTRIBUTION = "ndcore"


@dataclass
class PluginInfo:
    name: str  # entry-point name (or the name given to ``PluginManager.register``)
    module: str
    distribution: Optional[str]  # None: registered in process
    version: str
    builtin: bool = False
    load_error: Optional[str] = None  # the plugin could not be imported or registered
    hook_errors: Dict[str, str] = field(default_factory=dict)  # hook name -> error
    load_traceback: Optional[str] = None
    hook_tracebacks: Dict[str, str] = field(default_factory=dict)  # hook name -> traceback
    hooks: List[str] = field(default_factory=list)
    adapters: Dict[str, List[str]] = field(default_factory=dict)  # kind -> names
    load_notes: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # clashes, registrations refused

    @property
    def error(self) -> Optional[str]:
        if self.load_error:
            return self.load_error
        return "; ".join(self.hook_errors.values()) or None

    @property
    def traceback(self) -> Optional[str]:
        found = [self.load_traceback] if self.load_traceback else []
        return "\n".join(found + list(self.hook_tracebacks.values())) or None

    def forget_hook_results(self) -> None:
        """Before the registration hooks are called again."""
        self.hook_errors.clear()
        self.hook_tracebacks.clear()
        self.adapters.clear()
        self.notes = list(self.load_notes)

    def note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    @property
    def models(self) -> List[str]:
        return self.adapters.get("model", [])

    @property
    def datasets(self) -> List[str]:
        return self.adapters.get("dataset", [])

    @property
    def where(self) -> str:
        return f"{self.distribution} {self.version}".strip() if self.distribution else \
            "registered in process"


def entry_point_plugins() -> Iterator[Tuple[PluginInfo, Optional[Any]]]:
    """Each plugin of the entry-point group: its info and the loaded object (None, with
    ``info.load_error`` set, when it cannot be imported). A plugin whose entry-point name is
    taken is named ``DIST:name``."""
    eps = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        eps.append((ep, dist_name or "?", dist.version if dist is not None else ""))
    # Built-ins first: they keep their plugin names and adapter names.
    eps.sort(key=lambda e: canonical_name(e[1]) != BUILTIN_DISTRIBUTION)
    taken: Dict[str, PluginInfo] = {}
    for ep, dist_name, version in eps:
        name, notes = ep.name, []
        if name in taken:
            name = f"{canonical_name(dist_name)}:{ep.name}"
            notes.append(f"its entry-point name '{ep.name}' is taken by "
                         f"{taken[ep.name].where}; listed as {name}")
        info = PluginInfo(name, ep.value, dist_name, version,
                          builtin=canonical_name(dist_name) == BUILTIN_DISTRIBUTION,
                          load_notes=notes, notes=list(notes))
        taken[name] = info
        try:
            plugin = ep.load()
        except Exception as e:  # a broken plugin must not take the tool down
            info.load_error = f"cannot import {ep.value}: {one_line(e)}"
            info.load_traceback = traceback_text(e)
            plugin = None
        yield info, plugin
