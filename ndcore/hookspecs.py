"""The hooks through which plugins add model and dataset adapters.

A plugin is a module (or object) with functions marked ``@ndcore.hookimpl``, found through the
``ndcore`` entry-point group. Each hook receives a ``register`` callback::

    @hookimpl
    def ndcore_register_models(register):
        register("mymodels", build_my_model, description="my lab's CNNs")

``register(name, factory, description="")``: the spec ``name:TARGET`` then calls
``factory(TARGET, request)``, where ``request`` is a :class:`ndcore.models.ModelRequest`
(model factories, returning a :class:`ndcore.models.ModelAdapter`) or a
:class:`ndcore.plugins.DatasetRequest` (dataset factories, returning a
:class:`ndcore.data.probe.ProbeSource`).
"""

import pluggy

hookspec = pluggy.HookspecMarker("ndcore")
hookimpl = pluggy.HookimplMarker("ndcore")


@hookspec
def ndcore_register_models(register):
    """Register model adapter factories: ``register(name, factory, description="")``."""


@hookspec
def ndcore_register_datasets(register):
    """Register dataset adapter (probe source) factories: ``register(name, factory, description="")``."""
