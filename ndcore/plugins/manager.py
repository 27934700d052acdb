"""The plugin manager: the plugins found, their registration hooks called through pluggy, and
specs resolved to objects built by the adapters' factories."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import pluggy

from .. import hookspecs
from ..errors import (TRACEBACK_HINT, NdcoreError, PluginError, one_line, suggest,
                      traceback_text)
from .adapters import AdapterTable, Origin, Registration, canonical_name, registration_problem
from .discovery import PluginInfo, entry_point_plugins
from .hookcall import HookCall, bind_to_plugin
from .kinds import ADAPTER_KINDS

log = logging.getLogger("ndcore.plugins")

HOOKS = {kind.hook for kind in ADAPTER_KINDS.values()}


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
            for info, plugin in entry_point_plugins():
                self.infos[info.name] = info
                if plugin is None:
                    self._failed(info, info.load_error)
                else:
                    self._add(plugin, info)

    def _failed(self, info: PluginInfo, error: str) -> None:
        if self.report_failures:
            log.warning("plugin %s (%s) is not used: %s (`ndcore plugins` lists the plugins)",
                        info.name, info.where, error)

    # -- plugins -----------------------------------------------------------------------------

    def _add(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as e:  # ValueError (registered twice), PluginValidationError
            info.load_error = one_line(e)
            info.load_traceback = traceback_text(e)
            return
        for caller in self.pm.get_hookcallers(plugin) or []:
            info.hooks.append(caller.name)
            if caller.spec is None:
                info.load_notes.append(f"hook {caller.name} is not an ndcore hook and is never "
                                       f"called{suggest(caller.name, sorted(HOOKS))}")
            elif caller.name in HOOKS:
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        bind_to_plugin(impl)
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

    def plugin_infos(self) -> List[PluginInfo]:
        for kind in ADAPTER_KINDS:
            self.table(kind)
        return sorted(self.infos.values(), key=lambda i: (not i.builtin, i.name))

    # -- the registration hooks ----------------------------------------------------------------

    def table(self, kind: str) -> AdapterTable:
        """The adapters of ``kind``; its hook is called the first time only."""
        if kind not in ADAPTER_KINDS:
            raise PluginError(f"no hook registers {kind} adapters (kinds: "
                              f"{', '.join(ADAPTER_KINDS)})")
        if kind not in self._tables:
            table = AdapterTable.build(kind, self._registrations(kind, self._call_hook(kind)))
            for reg in table.registrations:
                self.infos[reg.plugin].adapters.setdefault(kind, []).append(reg.name)
            for plugin, note in table.notes:
                self.infos[plugin].note(note)
            self._tables[kind] = table
        return self._tables[kind]

    def _call_hook(self, kind: str) -> HookCall:
        """Call ``kind``'s hook; a plugin whose implementation raises is recorded as failed, and
        the hook is called again without it (the other plugins keep their adapters)."""
        name = ADAPTER_KINDS[kind].hook
        failed: List[str] = []
        while True:
            call = HookCall()
            hook = getattr(self.pm.hook, name)
            if failed:
                hook = self.pm.subset_hook_caller(name, [self.pm.get_plugin(n) for n in failed])
            try:
                call.run(hook)
                return call
            except Exception as e:
                if call.raised_by is None:
                    raise PluginError(f"{name} failed: {one_line(e)}") from e
                failed.append(call.raised_by)
                info = self.infos[call.raised_by]
                info.hook_errors[name] = f"{name} raised {one_line(e)}"
                info.hook_tracebacks[name] = traceback_text(e)
                self._failed(info, info.hook_errors[name])

    def _registrations(self, kind: str, call: HookCall) -> List[Registration]:
        """What the call registered, refusals noted, in order of precedence (built-ins first,
        then plugin by plugin in the order they were found)."""
        found: List[Registration] = []
        for plugin, name, factory, description in call.registrations:
            info = self.infos[plugin]
            problem = registration_problem(name, factory, description)
            if problem is None and any(r.name == name and r.plugin == plugin for r in found):
                problem = f"registers {kind} adapter '{name}' twice; the second is ignored"
            if problem:
                info.note(problem)
            else:
                found.append(Registration(kind, name, factory, description, plugin,
                                          info.distribution, info.version, info.builtin))
        order = {name: i for i, name in enumerate(self.infos)}
        return sorted(found, key=lambda r: (not r.builtin, order[r.plugin]))

    # -- specs -------------------------------------------------------------------------------

    def adapters(self, kind: str) -> List[Registration]:
        """Every registration of ``kind`` (also those reachable only as ``DIST:name``)."""
        return sorted(self.table(kind).registrations, key=lambda r: (r.name, not r.reachable))

    def find(self, kind: str, spec: str) -> Tuple[Registration, str]:
        """The registration a spec names and the spec's target.

        ``NAME:TARGET`` or ``DIST:NAME:TARGET`` (DIST as pip spells the distribution).
        """
        table = self.table(kind)
        if not isinstance(spec, str) or not spec.strip():
            raise PluginError(f"empty {kind} spec: give NAME:TARGET ({table.available()})")
        found = table.find(spec)
        if found is not None:
            return found
        name = spec.partition(":")[0]
        failed = [i for i in self.infos.values() if i.error]
        hint = (f"; plugins that failed to load: {', '.join(i.name for i in failed)} "
                "(`ndcore plugins` says why)") if failed else ""
        err = PluginError(
            f"no {kind} adapter {name!r} (spec {spec!r})"
            # one spelling per adapter ("none": no adapters at all, nothing to suggest)
            f"{suggest(name, [n for n in table.available().split(', ') if n != 'none'])}; "
            f"available: {table.available()}{hint}")
        err.details = "\n".join(i.traceback or "" for i in failed)
        raise err

    def resolve(self, kind: str, spec: str, request: Any) -> Tuple[Any, Origin]:
        """The object ``spec`` names, built by its adapter's factory from ``request`` and
        checked, and who built it. Errors are one line that names the adapter and its plugin."""
        reg, target = self.find(kind, spec)
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
        problem = ADAPTER_KINDS[kind].check(built)
        if problem:
            raise PluginError(f"{origin}: {kind} spec {spec!r}: the factory {problem}")
        if not reg.reachable or spec.split(":", 1)[0] != reg.name:
            _qualify_spec(built, reg)
        return built, origin


def _prefixed(e: NdcoreError, message: str) -> NdcoreError:
    """The same kind of error with ``message`` (a plugin's own subclass may not allow it)."""
    try:
        return type(e)(message)
    except Exception:
        return PluginError(message)


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
