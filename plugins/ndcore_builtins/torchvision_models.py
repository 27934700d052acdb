"""``torchvision:<name>``: any torchvision classification model, weights from a local file.

Layer layouts need no declaration here: Swin, ConvNeXt, ViT and MaxViT are recognised from
their modules by ``ndcore.capture.recognize`` (so a ``python:`` factory that builds one gets
the same layouts).
"""

from ndcore.plugin_api import (ModelAdapter, ModelRequest, PluginError, Preprocess, apply_weights,
                               hookimpl, suggest)


def build(target: str, request: ModelRequest) -> ModelAdapter:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if target not in names:
        raise PluginError(f"torchvision has no model {target!r}{suggest(target, names)}")
    # weights=None: nothing is downloaded; weights come from --weights (or --random-init).
    module = torchvision.models.get_model(target, weights=None)
    spec = f"torchvision:{target}"
    sha = apply_weights(module, request, spec)
    size = (299, 299) if target.startswith("inception") else (224, 224)
    return ModelAdapter(spec=spec, module=module, preprocess=Preprocess(), input_size=size,
                        weights=request.weights, weights_sha256=sha,
                        description=f"torchvision {target}")


@hookimpl
def ndcore_register_models(register):
    register("torchvision", build, description="torchvision models: torchvision:<name>")
