"""``broden:<dir>``: a dataset in the Broden on-disk format."""

from ndcore import hookimpl
from ndcore.data.broden import BrodenDataset
from ndcore.errors import DatasetError
from ndcore.plugins import DatasetRequest


def build(target: str, request: DatasetRequest) -> BrodenDataset:
    if not target:
        raise DatasetError("broden dataset spec needs a directory: broden:<dir>")
    return BrodenDataset(target, categories=request.categories, max_images=request.max_images,
                         spec=f"broden:{target}")


@hookimpl
def ndcore_register_datasets(register):
    register("broden", build, description="Broden-format directory: broden:<dir>")
