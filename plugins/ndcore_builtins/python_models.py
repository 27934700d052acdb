"""``python:<module-or-file.py>:<factory>``: any nn.Module that the user's code builds.

The factory is called with no arguments and returns an ``nn.Module`` (or a ModelAdapter).
Its weights are used as built unless ``--weights`` gives a state dict.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

from torch import nn

from ndcore.plugin_api import (TRACEBACK_HINT, ModelAdapter, ModelRequest, NdcoreError,
                               PluginError, apply_weights, hookimpl, one_line)


def _import(source: str):
    if source.endswith(".py"):
        path = Path(source).resolve()
        if not path.is_file():
            raise PluginError(f"python model: file {source} not found")
        name = f"ndcore_user_model_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(source)


def build(target: str, request: ModelRequest) -> ModelAdapter:
    source, sep, factory_name = target.rpartition(":")
    if not sep or not source or not factory_name:
        raise PluginError(f"python model spec must be python:<module-or-file.py>:<factory>, got "
                          f"python:{target}")
    try:
        module = _import(source)
    except PluginError:
        raise
    except Exception as e:
        raise PluginError(f"python model: cannot import {source}: {one_line(e)} "
                          f"({TRACEBACK_HINT})") from e
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        raise PluginError(f"python model: {source} has no callable {factory_name!r}")
    try:
        built = factory()
    except NdcoreError:
        raise
    except Exception as e:
        raise PluginError(f"python model: {source}:{factory_name}() raised {one_line(e)} "
                          f"({TRACEBACK_HINT})") from e
    spec = f"python:{target}"
    if isinstance(built, ModelAdapter):
        adapter = built
    elif isinstance(built, nn.Module):
        adapter = ModelAdapter(spec=spec, module=built, description=f"{source}:{factory_name}")
    else:
        raise PluginError(f"python model: {factory_name}() returned {type(built).__name__}, "
                          "not an nn.Module")
    if request.weights:
        adapter.weights_sha256 = apply_weights(adapter.module, request, spec)
        adapter.weights = request.weights
    return adapter


@hookimpl
def ndcore_register_models(register):
    register("python", build, description="your own nn.Module: python:<module|file.py>:<factory>")
