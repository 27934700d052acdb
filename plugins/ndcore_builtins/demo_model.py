"""``demo``: the small CNN trained on the synthetic dataset, with committed weights."""

from ndcore.plugin_api import (DEMO_MEAN, DEMO_STD, DEMO_WEIGHTS, ModelAdapter, ModelRequest,
                               Preprocess, apply_weights, build_demo_model, hookimpl, sha256_of)


def build(target: str, request: ModelRequest) -> ModelAdapter:
    module = build_demo_model(pretrained=not request.weights and not request.random_init)
    mean = tuple(255.0 * m for m in DEMO_MEAN)
    std = tuple(255.0 * s for s in DEMO_STD)
    if request.weights or request.random_init:
        sha = apply_weights(module, request, "demo")
        weights = request.weights
    else:
        weights = str(DEMO_WEIGHTS)
        sha = sha256_of(weights)
    return ModelAdapter(spec="demo", module=module, preprocess=Preprocess(mean, std, name="demo"),
                        input_size=(112, 112), weights=weights, weights_sha256=sha,
                        description="ndcore demo CNN trained on the synthetic dataset")


@hookimpl
def ndcore_register_models(register):
    register("demo", build, description="the demo CNN trained on the synthetic data: demo")
