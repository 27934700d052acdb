"""``broden:<dir>``: a dataset in the Broden on-disk format."""

from ndcore.plugin_api import BrodenDataset, DatasetError, DatasetRequest, hookimpl


def build(target: str, request: DatasetRequest) -> BrodenDataset:
    # The request's categories and max_images are hints (the engine applies them anyway); the
    # reader uses them to skip the rows and label planes that are not wanted.
    if not target:
        raise DatasetError("broden dataset spec needs a directory: broden:<dir>")
    return BrodenDataset(target, categories=request.categories, max_images=request.max_images,
                         spec=f"broden:{target}")


@hookimpl
def ndcore_register_datasets(register):
    register("broden", build, description="Broden-format directory: broden:<dir>")
