"""Plugin manager: discovers plugins through the ``ndcore`` entry-point group, calls their hooks
through pluggy, resolves ``NAME:TARGET`` specs and builds adapters (docs/plugins.md).

- Built-in adapters (``plugins/ndcore_builtins``) are registered through the same entry points a
  third-party package uses, and are loaded first.
- Each registration hook is called once per process, through pluggy's own hook caller
  (``pm.hook.ndcore_register_models(register=...)``), so ordering, ``tryfirst``/``trylast`` and
  wrappers work as in any pluggy host. ``register`` finds out which plugin is calling it from the
  call stack (the frame of that plugin's hook implementation).
- Nothing takes the tool down: a plugin that fails to import, or whose hook raises, is recorded
  with its error (``ndcore plugins`` shows it, ``--traceback`` shows its traceback) and the
  others keep working. A name that a built-in uses stays the built-in's; the clashing adapter is
  reachable as ``DIST:name``. A name that two third-party plugins use is reachable only as
  ``DIST:name``.
- Factories are called with their errors turned into one line that names the adapter, the
  plugin and its distribution; what they return is checked (``RESULT_CHECKS``).

This module imports neither torch nor any plugin: building the parser stays fast. Plugins are
discovered when an adapter is first needed (or ``--model`` / ``--dataset`` help is shown).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pluggy

from . import hookspecs
from .errors import (TRACEBACK_HINT, NdcoreError, PluginError, one_line, suggest,
                     traceback_text)
from .hookspecs import ADAPTER_HOOKS

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ndcore"
BUILTIN_DISTRIBUTION = "ndcore"

# kind -> "module:function" that checks what a factory returned (returns an error or None).
RESULT_CHECKS: Dict[str, str] = {
    "model": "ndcore.data.validate:check_model_adapter",
    "dataset": "ndcore.data.validate:check_probe_source",
    "segmenter": "ndcore.gan.segmenters:check_segmenter",
}


@dataclass
class DatasetRequest:
    """What a user asked of a dataset, handed to a dataset factory with the spec's target.

    ``categories``, ``max_images`` and ``resize`` are hints: the engine applies all three to
    every source itself (``ndcore.data.view``). A source may use them to skip work (not reading
    the planes of categories that are not wanted); it never has to.
    """

    categories: Optional[Sequence[str]] = None
    max_images: Optional[int] = None
    resize: Optional[Tuple[int, int]] = None
    options: Dict[str, str] = field(default_factory=dict)


def canonical_name(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): 'My_Plugin' -> 'my-plugin'."""
    return re.sub(r"[-_.]+", "-", name).lower()


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


@dataclass
class AdapterTable:
    """The adapters of one kind, as registered by every plugin."""

    kind: str
    registrations: List[Registration] = field(default_factory=list)
    names: Dict[str, Registration] = field(default_factory=dict)  # bare names that resolve
    ambiguous: Dict[str, List[Registration]] = field(default_factory=dict)
    qualified: Dict[str, Registration] = field(default_factory=dict)  # "dist:name"


def _code_of(function: Callable):
    function = getattr(function, "__func__", function)
    return getattr(function, "__code__", None)


def _owners(impls) -> Dict[Any, List[Tuple[Any, str]]]:
    """code object of each hook implementation -> [(plugin object, plugin name)]."""
    owners: Dict[Any, List[Tuple[Any, str]]] = {}
    for impl in impls:
        code = _code_of(impl.function)
        if code is not None:
            owners.setdefault(code, []).append((impl.plugin, impl.plugin_name))
    return owners


def _owner_of_frame(frame, owners) -> Optional[str]:
    candidates = owners.get(frame.f_code)
    if not candidates:
        return None
    if len(candidates) > 1:  # one class registered as several plugin objects
        me = frame.f_locals.get("self")
        for plugin, name in candidates:
            if plugin is me:
                return name
    return candidates[0][1]


def _calling_plugin(owners, depth: int = 2) -> Optional[str]:
    """The plugin whose hook implementation is on the call stack (innermost first)."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = _owner_of_frame(frame, owners)
        if name is not None:
            return name
        frame = frame.f_back
    return None


def _culprit(tb, owners) -> Optional[str]:
    """The plugin whose hook implementation an exception's traceback passes through."""
    found = None
    while tb is not None:
        name = _owner_of_frame(tb.tb_frame, owners)
        if name is not None:
            found = name
        tb = tb.tb_next
    return found


def _load_check(kind: str) -> Optional[Callable[[Any], Optional[str]]]:
    path = RESULT_CHECKS.get(kind)
    if not path:
        return None
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


class PluginManager:
    """``report_failures``: log one warning line per plugin that fails to import or whose hook
    raises, when that happens (``ndcore plugins`` turns it off: it lists them itself)."""

    def __init__(self, load_entry_points: bool = True, report_failures: bool = True) -> None:
        self.pm = pluggy.PluginManager("ndcore")
        self.pm.add_hookspecs(hookspecs)
        self.infos: Dict[str, PluginInfo] = {}
        self._tables: Dict[str, AdapterTable] = {}
        self.report_failures = report_failures
        if load_entry_points:
            self._load_entry_points()

    def _failed(self, info: PluginInfo, error: str) -> None:
        if self.report_failures:
            log.warning("plugin %s (%s) is not used: %s (`ndcore plugins` lists the plugins)",
                        info.name, info.where, error)

    # -- discovery ---------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        eps = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            eps.append((ep, dist_name or "?", dist.version if dist is not None else ""))
        # Built-ins first: they keep their plugin names and adapter names.
        eps.sort(key=lambda e: canonical_name(e[1]) != BUILTIN_DISTRIBUTION)
        for ep, dist_name, version in eps:
            builtin = canonical_name(dist_name) == BUILTIN_DISTRIBUTION
            name, notes = ep.name, []
            if name in self.infos:
                name = f"{canonical_name(dist_name)}:{ep.name}"
                notes.append(f"its entry-point name '{ep.name}' is taken by "
                             f"{self.infos[ep.name].where}; listed as {name}")
            info = PluginInfo(name, ep.value, dist_name, version, builtin=builtin,
                              load_notes=notes, notes=list(notes))
            self.infos[name] = info
            try:
                plugin = ep.load()
            except Exception as e:  # a broken plugin must not take the tool down
                info.load_error = f"cannot import {ep.value}: {one_line(e)}"
                info.load_traceback = traceback_text(e)
                self._failed(info, info.load_error)
                continue
            self._add(plugin, info)

    def _add(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as e:  # ValueError (registered twice), PluginValidationError
            info.load_error = one_line(e)
            info.load_traceback = traceback_text(e)
            return
        known = set(ADAPTER_HOOKS.values()) | {
            n for n in dir(hookspecs) if n.startswith("ndcore_")}
        for caller in self.pm.get_hookcallers(plugin) or []:
            info.hooks.append(caller.name)
            if caller.spec is None:
                info.load_notes.append(f"hook {caller.name} is not an ndcore hook and is never "
                                       f"called{suggest(caller.name, sorted(known))}")
        if not info.hooks:
            info.load_notes.append("implements no ndcore hook (mark functions with "
                                   "@ndcore.hookimpl)")
        self._invalidate()

    def register(self, plugin: Any, name: str, version: str = "",
                 distribution: Optional[str] = None) -> None:
        """Register a plugin object or module directly (tests, notebooks)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, module, distribution, version,
                          builtin=module.startswith("ndcore_builtins"))
        self.infos[name] = info
        self._add(plugin, info)
        if info.load_error:
            raise PluginError(f"plugin {name}: {info.load_error}")

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._invalidate()

    def _invalidate(self) -> None:
        """The plugins changed: the registration hooks are called again when next needed."""
        self._tables.clear()
        for info in self.infos.values():
            info.forget_hook_results()

    # -- calling the registration hooks --------------------------------------------------------

    def table(self, kind: str) -> AdapterTable:
        """The adapters of ``kind``; the hook is called the first time only."""
        if kind not in ADAPTER_HOOKS:
            raise PluginError(f"no hook registers {kind} adapters (kinds: "
                              f"{', '.join(ADAPTER_HOOKS)})")
        if kind not in self._tables:
            self._tables[kind] = self._build_table(kind, self._call_hook(kind))
        return self._tables[kind]

    def _call_hook(self, kind: str) -> List[Registration]:
        hook_name = ADAPTER_HOOKS[kind]
        failed: List[str] = []
        while True:
            if failed:
                caller = self.pm.subset_hook_caller(
                    hook_name, [self.pm.get_plugin(n) for n in failed])
            else:
                caller = getattr(self.pm.hook, hook_name)
            owners = _owners(caller.get_hookimpls())
            found: List[Registration] = []

            def register(name: str, factory: Callable, description: str = "") -> None:
                plugin = _calling_plugin(owners)
                self._accept(kind, found, plugin, name, factory, description)

            try:
                caller(register=register)
                return found
            except Exception as e:
                culprit = _culprit(e.__traceback__, owners)
                if culprit is None or culprit in failed:
                    raise PluginError(f"{hook_name} failed: {one_line(e)}") from e
                failed.append(culprit)
                info = self.infos[culprit]
                info.hook_errors[hook_name] = f"{hook_name} raised {one_line(e)}"
                info.hook_tracebacks[hook_name] = traceback_text(e)
                self._failed(info, info.hook_errors[hook_name])

    def _accept(self, kind: str, found: List[Registration], plugin: Optional[str], name,
                factory, description) -> None:
        info = self.infos.get(plugin) if plugin else None
        problem = None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name or ""):
            problem = (f"register({name!r}, ...): a name is letters, digits and _ . + - "
                       "(no ':' or spaces)")
        elif not callable(factory):
            problem = f"register({name!r}, ...): the factory {factory!r} is not callable"
        elif not isinstance(description, str):
            problem = f"register({name!r}, ...): description must be a string"
        elif any(r.name == name and r.plugin == plugin for r in found):
            problem = f"registers {kind} adapter '{name}' twice; the second is ignored"
        if problem:
            if info is not None and problem not in info.notes:
                info.notes.append(problem)
            return
        found.append(Registration(
            kind, name, factory, description, plugin or "?",
            info.distribution if info else None, info.version if info else "",
            info.builtin if info else False))

    def _build_table(self, kind: str, found: List[Registration]) -> AdapterTable:
        order = {name: i for i, name in enumerate(self.infos)}
        found.sort(key=lambda r: (not r.builtin, order.get(r.plugin, len(order))))
        table = AdapterTable(kind, found)
        by_name: Dict[str, List[Registration]] = {}
        for reg in found:
            by_name.setdefault(reg.name, []).append(reg)
            table.qualified.setdefault(reg.qualified, reg)
            info = self.infos.get(reg.plugin)
            if info is not None:
                info.adapters.setdefault(kind, []).append(reg.name)
        for name, regs in by_name.items():
            builtins = [r for r in regs if r.builtin]
            if builtins:
                table.names[name] = builtins[0]
                losers = [r for r in regs if r is not builtins[0]]
                for r in losers:
                    r.reachable = False
                    self._note(r, f"{kind} adapter '{name}' clashes with ndcore's built-in "
                                  f"'{name}', which keeps the name: use {r.qualified}:TARGET, "
                                  f"or `pip uninstall {r.distribution or r.plugin}`")
            elif len(regs) == 1:
                table.names[name] = regs[0]
            else:
                table.ambiguous[name] = regs
                for r in regs:
                    r.reachable = False
                    others = ", ".join(o.distribution or o.plugin for o in regs if o is not r)
                    self._note(r, f"{kind} adapter '{name}' is also registered by {others}: "
                                  f"use {r.qualified}:TARGET, or uninstall one of them")
        return table

    def _note(self, reg: Registration, note: str) -> None:
        info = self.infos.get(reg.plugin)
        if info is not None and note not in info.notes:
            info.notes.append(note)

    # -- lookups -----------------------------------------------------------------------------

    def adapters(self, kind: str) -> List[Registration]:
        """Every registration of ``kind`` (also those reachable only as ``DIST:name``)."""
        return sorted(self.table(kind).registrations, key=lambda r: (r.name, not r.reachable))

    def models(self) -> Dict[str, Registration]:
        return dict(self.table("model").names)

    def datasets(self) -> Dict[str, Registration]:
        return dict(self.table("dataset").names)

    def plugin_infos(self) -> List[PluginInfo]:
        for kind in ADAPTER_HOOKS:
            self.table(kind)
        return sorted(self.infos.values(), key=lambda i: (not i.builtin, i.name))

    def _failed_plugins(self) -> List[PluginInfo]:
        return [i for i in self.infos.values() if i.error]

    def resolve(self, kind: str, spec: str) -> Tuple[Registration, str]:
        """The registration a spec names and the spec's target.

        ``NAME:TARGET`` or ``DIST:NAME:TARGET`` (DIST as pip spells the distribution).
        """
        if not isinstance(spec, str) or not spec.strip():
            raise PluginError(f"empty {kind} spec: give NAME:TARGET ({self._names(kind)})")
        table = self.table(kind)
        parts = spec.split(":", 2)
        if len(parts) >= 2:
            reg = table.qualified.get(f"{canonical_name(parts[0])}:{parts[1]}")
            if reg is not None:
                return reg, parts[2] if len(parts) == 3 else ""
        name, _, target = spec.partition(":")
        if name in table.names:
            return table.names[name], target
        if name in table.ambiguous:
            regs = table.ambiguous[name]
            raise PluginError(
                f"{kind} adapter '{name}' is registered by several plugins "
                f"({', '.join(f'{r.plugin} from {r.distribution or r.plugin}' for r in regs)}); "
                f"say which: {' or '.join(f'{r.qualified}:{target}' for r in regs)}")
        failed = self._failed_plugins()
        hint = (f"; plugins that failed to load: {', '.join(i.name for i in failed)} "
                "(`ndcore plugins` says why)") if failed else ""
        err = PluginError(
            f"no {kind} adapter {name!r} (spec {spec!r})"
            f"{suggest(name, list(table.names) + list(table.qualified))}; "
            f"available: {self._names(kind)}{hint}")
        err.details = "\n".join(i.traceback or "" for i in failed)
        raise err

    def _names(self, kind: str) -> str:
        table = self.table(kind)
        names = sorted(table.names) + sorted(
            r.qualified for r in table.registrations if not r.reachable)
        return ", ".join(names) or "none"

    def create(self, kind: str, spec: str, request: Any) -> Tuple[Any, Origin]:
        """Build the adapter a spec names: (the object, its origin). Errors are one line."""
        reg, target = self.resolve(kind, spec)
        origin = reg.origin
        try:
            built = reg.factory(target, request)
        except NdcoreError as e:
            if reg.builtin:
                raise  # ndcore's own adapters already name the file or setting at fault
            raise _prefixed(e, f"{origin}: {e}") from e
        except Exception as e:
            raise PluginError(f"{origin}: {kind} spec {spec!r}: the factory raised "
                              f"{one_line(e)} ({TRACEBACK_HINT})") from e
        check = _load_check(kind)
        problem = check(built) if check is not None else None
        if problem:
            raise PluginError(f"{origin}: {kind} spec {spec!r}: the factory {problem}")
        if not reg.reachable or spec.split(":", 1)[0] != reg.name:
            _qualify_spec(built, reg)
        return built, origin

    def build(self, kind: str, spec: str, request: Any = None):
        """The adapter of ``kind`` that ``spec`` names (see :meth:`create`)."""
        return self.create(kind, spec, request)[0]

    def build_model(self, spec: str, request):
        return self.create("model", spec, request)[0]

    def build_dataset(self, spec: str, request: DatasetRequest):
        return self.create("dataset", spec, request)[0]

    def build_segmenter(self, spec: str, request: Any = None):
        """A segmenter (GAN dissection's labeller) by spec ``NAME[:TARGET]``."""
        return self.create("segmenter", spec, request)[0]


def _prefixed(e: NdcoreError, message: str) -> NdcoreError:
    """The same kind of error with ``message`` (a plugin's own subclass may not allow it)."""
    try:
        new = type(e)(message)
    except Exception:
        new = PluginError(message)
    return new


def _qualify_spec(built: Any, reg: Registration) -> None:
    """A ``DIST:name`` adapter records its spec qualified, so that it is rebuilt the same."""
    prefix = canonical_name(reg.distribution or reg.plugin) + ":"
    holder = getattr(built, "info", None) if reg.kind == "dataset" else built
    spec = getattr(holder, "spec", None)
    if isinstance(spec, str) and spec.split(":", 1)[0] == reg.name:
        try:
            holder.spec = prefix + spec
        except AttributeError:
            pass


# -- help texts that list the installed adapters (built only when shown) --------------------

def adapter_listing(kind: str, pm: Optional[PluginManager] = None) -> str:
    """'name (description); ...' for every adapter of ``kind``."""
    pm = pm or get_plugin_manager()
    items = []
    for reg in pm.adapters(kind):
        name = reg.name if reg.reachable else reg.qualified
        items.append(f"{name} ({reg.description})" if reg.description else name)
    failed = [i.name for i in pm.infos.values() if i.error]
    text = "; ".join(items) or "none installed"
    if failed:
        text += f" (plugins that failed to load: {', '.join(failed)}; see `ndcore plugins`)"
    return text


class _AdapterHelp(str):
    """An argparse help string that lists the installed adapters when help is shown.

    argparse expands help with ``help % params`` only when it formats the help; plugins are
    discovered then, not when the parser is built.
    """

    def __new__(cls, kind: str, text: str) -> "_AdapterHelp":
        self = super().__new__(cls, text)
        self.kind = kind
        return self

    def __mod__(self, params) -> str:
        frame = sys._getframe(1)
        for _ in range(3):  # newer argparse checks help strings when an option is added
            if frame is None or frame.f_code.co_name == "_check_help":
                return str(self)
            frame = frame.f_back
        try:
            listing = adapter_listing(self.kind)
        except Exception as e:  # help must always print
            listing = f"(cannot list plugins: {one_line(e)})"
        return f"{self}. Installed: {listing}"


def adapter_help(kind: str, text: str) -> str:
    """Help for a ``--model`` / ``--dataset`` option: ``text`` plus the installed adapters."""
    return _AdapterHelp(kind, text)


_default: Optional[PluginManager] = None


def get_plugin_manager(report_failures: bool = True) -> PluginManager:
    """The process's plugin manager (entry points loaded on first use)."""
    global _default
    if _default is None:
        _default = PluginManager(report_failures=report_failures)
    return _default


def reset_plugin_manager() -> None:
    """Forget the process's plugin manager (tests that change sys.path)."""
    global _default
    _default = None
