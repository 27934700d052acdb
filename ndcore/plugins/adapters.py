"""The adapters of one kind and their names (docs/plugins.md, "Specs and names").

A name that a built-in uses stays the built-in's; the clashing adapter is reachable as
``DIST:name``. A name that two third-party plugins use is reachable only as ``DIST:name``. Every
clash becomes a note on the plugin that loses the bare name (``ndcore plugins`` lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import PluginError

NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def canonical_name(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): 'My_Plugin' -> 'my-plugin'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def registration_problem(name, factory, description) -> Optional[str]:
    """Why ``register(name, factory, description)`` is refused, or None."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return (f"register({name!r}, ...): a name is letters, digits and _ . + - "
                "(no ':' or spaces)")
    if not callable(factory):
        return f"register({name!r}, ...): the factory {factory!r} is not callable"
    if not isinstance(description, str):
        return f"register({name!r}, ...): description must be a string"
    return None


@dataclass(frozen=True)
class Origin:
    """Who made an object: named in every message about it."""

    kind: str  # "model", "dataset", ...
    adapter: str  # the registered name
    plugin: str  # entry-point name
    distribution: Optional[str] = None  # None: registered in process
    version: str = ""
    builtin: bool = False

    def __str__(self) -> str:
        where = f"{self.distribution} {self.version}".strip() if self.distribution else \
            "registered in process"
        return f"{self.kind} adapter '{self.adapter}' (plugin {self.plugin}, {where})"


@dataclass
class Registration:
    kind: str
    name: str
    factory: Callable
    description: str
    plugin: str
    distribution: Optional[str] = None
    version: str = ""
    builtin: bool = False
    reachable: bool = True  # False: another adapter has the bare name (see ``qualified``)

    @property
    def qualified(self) -> str:
        """``DIST:name``, which reaches this adapter whatever else registers ``name``."""
        return f"{canonical_name(self.distribution or self.plugin)}:{self.name}"

    @property
    def origin(self) -> Origin:
        return Origin(self.kind, self.name, self.plugin, self.distribution, self.version,
                      self.builtin)


@dataclass
class AdapterTable:
    """The adapters of one kind, as registered by every plugin (built-ins first)."""

    kind: str
    registrations: List[Registration] = field(default_factory=list)
    names: Dict[str, Registration] = field(default_factory=dict)  # bare names that resolve
    ambiguous: Dict[str, List[Registration]] = field(default_factory=dict)
    qualified: Dict[str, Registration] = field(default_factory=dict)  # "dist:name"
    notes: List[Tuple[str, str]] = field(default_factory=list)  # (plugin, clash)

    @classmethod
    def build(cls, kind: str, registrations: List[Registration]) -> "AdapterTable":
        """``registrations`` in order of precedence: built-ins first, then plugin by plugin."""
        table = cls(kind, registrations)
        by_name: Dict[str, List[Registration]] = {}
        for reg in registrations:
            by_name.setdefault(reg.name, []).append(reg)
            table.qualified.setdefault(reg.qualified, reg)
        for name, regs in by_name.items():
            builtins = [r for r in regs if r.builtin]
            if builtins:
                table.names[name] = builtins[0]
                for r in regs:
                    if r is not builtins[0]:
                        table._lose(r, f"{kind} adapter '{name}' clashes with ndcore's built-in "
                                       f"'{name}', which keeps the name: use {r.qualified}:TARGET, "
                                       f"or `pip uninstall {r.distribution or r.plugin}`")
            elif len(regs) == 1:
                table.names[name] = regs[0]
            else:
                table.ambiguous[name] = regs
                for r in regs:
                    others = ", ".join(o.distribution or o.plugin for o in regs if o is not r)
                    table._lose(r, f"{kind} adapter '{name}' is also registered by {others}: "
                                   f"use {r.qualified}:TARGET, or uninstall one of them")
        return table

    def _lose(self, reg: Registration, note: str) -> None:
        reg.reachable = False
        self.notes.append((reg.plugin, note))

    def find(self, spec: str) -> Optional[Tuple[Registration, str]]:
        """The registration ``NAME:TARGET`` or ``DIST:NAME:TARGET`` names, and the target; None
        for an unknown name. A name several plugins share is an error that lists the choices."""
        parts = spec.split(":", 2)
        if len(parts) >= 2:
            reg = self.qualified.get(f"{canonical_name(parts[0])}:{parts[1]}")
            if reg is not None:
                return reg, parts[2] if len(parts) == 3 else ""
        name, _, target = spec.partition(":")
        if name in self.names:
            return self.names[name], target
        if name in self.ambiguous:
            regs = self.ambiguous[name]
            raise PluginError(
                f"{self.kind} adapter '{name}' is registered by several plugins "
                f"({', '.join(f'{r.plugin} from {r.distribution or r.plugin}' for r in regs)}); "
                f"say which: {' or '.join(f'{r.qualified}:{target}' for r in regs)}")
        return None

    def available(self) -> str:
        """The specs' names, for messages: bare names, then ``DIST:name`` of the others."""
        names = sorted(self.names) + sorted(
            r.qualified for r in self.registrations if not r.reachable)
        return ", ".join(names) or "none"
