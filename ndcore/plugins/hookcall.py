"""One call of a registration hook, in which every registration names its plugin.

pluggy calls all of a hook's implementations with the same arguments, so a plain ``register``
callback cannot tell who calls it. ndcore hands each implementation a ``register`` of its own
instead: when a plugin is registered, :func:`bind_to_plugin` wraps each of its implementations
(pluggy's ``HookImpl.function``) in a function that replaces the :class:`HookCall` it receives
by ``call.register_for(plugin)``, and that records the plugin when the implementation raises.
The call itself stays pluggy's, ``pm.hook.ndcore_register_models(register=call)``: the order of
the implementations, ``tryfirst``/``trylast`` and wrappers work as in any pluggy host.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from contextvars import ContextVar
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pluggy

# The hook call in progress, in this thread: how a bound implementation finds its call, also
# one that takes no ``register`` argument (and can only fail).
_current: ContextVar[Optional["HookCall"]] = ContextVar("ndcore_hook_call", default=None)


class HookCall:
    """The registrations of one hook call, in call order, and the plugin that raised."""

    def __init__(self) -> None:
        # (plugin, name, factory, description), as the plugin gave them: checked by the manager
        self.registrations: List[Tuple[str, Any, Any, Any]] = []
        self.raised_by: Optional[str] = None

    def register_for(self, plugin: str) -> Callable[..., None]:
        """The ``register(name, factory, description="")`` that ``plugin``'s hook receives."""
        def register(name: str, factory: Callable, description: str = "") -> None:
            self.registrations.append((plugin, name, factory, description))
        return register

    def run(self, hook: Callable[..., Any]) -> None:
        """``hook(register=self)``: a pluggy hook caller, each implementation bound."""
        token = _current.set(self)
        try:
            hook(register=self)
        finally:
            _current.reset(token)

    @contextlib.contextmanager
    def blaming(self, plugin: str) -> Iterator[None]:
        """Record ``plugin`` if the code inside raises first (a wrapper also sees the exception
        of an implementation it wraps: that stays the implementation's)."""
        try:
            yield
        except Exception:
            if self.raised_by is None:
                self.raised_by = plugin
            raise


def bind_to_plugin(impl: pluggy.HookImpl) -> None:
    """Make one hook implementation receive its own plugin's ``register`` (see above). It is
    then called through :meth:`HookCall.run` only."""
    function, plugin = impl.function, impl.plugin_name

    def own(call: HookCall, args: tuple, kwargs: dict) -> Tuple[list, dict]:
        mine = call.register_for(plugin)
        return ([mine if a is call else a for a in args],
                {k: mine if v is call else v for k, v in kwargs.items()})

    if inspect.isgeneratorfunction(function):  # a wrapper: it runs around the others
        def bound(*args, **kwargs):
            call = _current.get()
            args, kwargs = own(call, args, kwargs)
            with call.blaming(plugin):
                return (yield from function(*args, **kwargs))
    else:
        def bound(*args, **kwargs):
            call = _current.get()
            args, kwargs = own(call, args, kwargs)
            with call.blaming(plugin):
                return function(*args, **kwargs)

    impl.function = functools.wraps(function)(bound)
