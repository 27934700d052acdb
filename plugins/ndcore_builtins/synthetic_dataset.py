"""``synthetic[:SIZE]``: the built-in generated Broden-format dataset (cached on disk)."""

from ndcore.plugin_api import (BrodenDataset, DatasetError, DatasetRequest, ensure_synthetic,
                               hookimpl)

DEFAULT_SIZE = 1000


def parse_target(target: str) -> dict:
    """'' -> defaults; '500' -> size 500; 'size=500,seed=3' -> both."""
    params = {"size": DEFAULT_SIZE, "seed": 0}
    for part in filter(None, target.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            key, value = "size", key
        if key not in params:
            raise DatasetError(f"synthetic dataset: unknown option {key!r} (size, seed)")
        try:
            params[key] = int(value)
        except ValueError:
            raise DatasetError(f"synthetic dataset: {key} must be an integer, got {value!r}") from None
    if params["size"] < 1:
        raise DatasetError("synthetic dataset: size must be >= 1")
    return params


def build(target: str, request: DatasetRequest) -> BrodenDataset:
    params = parse_target(target)
    root = ensure_synthetic(size=params["size"], seed=params["seed"])
    return BrodenDataset(root, categories=request.categories, max_images=request.max_images,
                         spec=f"synthetic:size={params['size']},seed={params['seed']}")


@hookimpl
def ndcore_register_datasets(register):
    register("synthetic", build, description="built-in generated Broden-format data: synthetic[:SIZE]")
