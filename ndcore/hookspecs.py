"""The hooks through which plugins add adapters (see docs/plugins.md for the whole contract).

A plugin is a module (or object) with functions marked ``@ndcore.hookimpl``, found through the
``ndcore`` entry-point group. Each hook receives a ``register`` callback, as in simonw/llm::

    @hookimpl
    def ndcore_register_models(register):
        register("mymodels", build_my_model, description="my lab's CNNs: mymodels:NAME")

``register(name, factory, description="")``: the spec ``name:TARGET`` then calls
``factory(TARGET, request)``. Model factories get a :class:`ndcore.plugin_api.ModelRequest` and
return a :class:`ndcore.plugin_api.ModelAdapter`; dataset factories get a
:class:`ndcore.plugin_api.DatasetRequest` and return a :class:`ndcore.plugin_api.ProbeSource`.

Each hook is one kind of adapter in ``ndcore.plugins.kinds.ADAPTER_KINDS``: adding a kind is
one hookspec below plus one entry there, with the check of what its factories return.
"""

import pluggy

hookspec = pluggy.HookspecMarker("ndcore")
hookimpl = pluggy.HookimplMarker("ndcore")


@hookspec
def ndcore_register_models(register):
    """Register model adapter factories.

    ``register(name, factory, description="")``; ``factory(target: str, request: ModelRequest)
    -> ModelAdapter``. Called once per process, when a model spec is first looked up.
    """


@hookspec
def ndcore_register_datasets(register):
    """Register dataset adapter (probe source) factories.

    ``register(name, factory, description="")``; ``factory(target: str, request:
    DatasetRequest) -> ProbeSource``. Called once per process, when a dataset spec is first
    looked up.
    """


@hookspec
def ndcore_register_segmenters(register):
    """Register segmenter factories (the labellers of GAN dissection).

    ``register(name, factory, description="")``; ``factory(target: str, request: None) ->
    ndcore.plugin_api.Segmenter``. Called once per process, when a segmenter spec is first
    looked up (``ndcore dissect --segmenter NAME[:TARGET]``).
    """

