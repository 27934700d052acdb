"""The plugin layer: plugins add model, dataset and segmenter adapters through the ``ndcore``
entry-point group; this package finds them, calls their hooks through pluggy and turns specs
such as ``torchvision:resnet18`` into objects (docs/plugins.md is the contract).

- ``kinds``: the kinds of adapter, with the hook that registers each and the check of what its
  factories return; ``DatasetRequest``.
- ``discovery``: the entry points, built-ins (``plugins/ndcore_builtins``) first.
- ``hookcall``: one call of a registration hook, in which every implementation gets a
  ``register`` that knows its plugin.
- ``adapters``: who keeps a name that several plugins register; the lookup of ``NAME:TARGET``
  and ``DIST:NAME:TARGET``.
- ``manager``: the plugin manager, and ``resolve(kind, spec, request)``, which builds what a
  spec names.

Nothing takes the tool down: a plugin that fails to import, or whose hook raises, is recorded
with its error (``ndcore plugins`` shows it, ``--traceback`` its traceback) and the others keep
working. Importing this package loads no plugin: they are discovered when an adapter is first
needed or listed. The CLI builds its parser without importing it (``ndcore/cli/adapter_help.py``
imports it when ``--help`` is shown), so that parsing stays fast.
"""

from .adapters import Origin, Registration
from .discovery import PluginInfo
from .kinds import ADAPTER_KINDS, DatasetRequest
from .manager import PluginManager, get_plugin_manager, reset_plugin_manager

__all__ = ["ADAPTER_KINDS", "DatasetRequest", "Origin", "PluginInfo", "PluginManager",
           "Registration", "get_plugin_manager", "reset_plugin_manager"]
