"""An example ndcore plugin: one model adapter and one dataset adapter (probe source).

Written against ``ndcore.plugin_api`` only; docs/plugins.md in ndcore is the reference.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ndcore.plugin_api import (DatasetError, DatasetRequest, ModelAdapter, ModelRequest,
                               Preprocess, ProbeItem, ProbeSource, ProbeSourceInfo, Vocabulary,
                               apply_weights, hookimpl)

__version__ = "0.1.0"


def build_tinycnn(target: str, request: ModelRequest) -> ModelAdapter:
    """``tinycnn:WIDTH``: a small CNN; weights from --weights, or random with --random-init."""
    width = int(target or 8)
    module = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
    sha = apply_weights(module, request, f"tinycnn:{width}")  # --weights, or --random-init
    return ModelAdapter(spec=f"tinycnn:{width}", module=module,
                        preprocess=Preprocess((0, 0, 0), (255, 255, 255), name="unit"),
                        input_size=(32, 32), weights=request.weights, weights_sha256=sha,
                        description=f"example tiny CNN, width {width}")


class Stripes(ProbeSource):
    """Images with red vertical stripes, generated in memory (no files).

    Label 1 ``stripe`` (category ``object``) marks the stripe pixel by pixel; label 2 ``red``
    (category ``color``) is an image-level label of the images with a wide stripe. ndcore
    applies --max-images, --categories and --resize itself: this source ignores them.
    """

    CATEGORIES = ["object", "color"]

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed = size, seed
        self.vocabulary = Vocabulary(
            categories=self.CATEGORIES,
            label_names=["-", "stripe", "red"],
            label_categories=[[], ["object"], ["color"]],
            primary=np.array([-1, 0, 1]))  # index into categories, -1 for label 0
        # spec names the data completely: a run directory is resumed or refused by it
        self.info = ProbeSourceInfo(spec=f"stripes:{size},seed={seed}", kind="stripes",
                                    size=size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ProbeItem:
        rng = np.random.default_rng(self.seed * 100003 + index)
        x0, width = int(rng.integers(0, 24)), int(rng.integers(2, 8))
        image = np.zeros((32, 32, 3), np.uint8)  # uint8 [H, W, 3], RGB
        image[:, x0:x0 + width, 0] = 255
        plane = np.zeros((1, 16, 16), np.int32)  # [P, sh, sw] label numbers, 0 = none
        plane[0, :, x0 // 2:(x0 + width + 1) // 2] = 1
        wide = width >= 5
        return ProbeItem(index=index, image=image, planes=plane,
                         plane_categories=[0],  # the plane was annotated as an "object"
                         image_labels=[2] if wide else [],
                         image_label_categories=[1] if wide else [],
                         annotated=np.array([True, True]), label_size=(16, 16))


def build_stripes(target: str, request: DatasetRequest) -> Stripes:
    try:
        return Stripes(int(target or 64))
    except ValueError:
        raise DatasetError(f"stripes:{target}: expected stripes:N (a number of images)") from None


@hookimpl
def ndcore_register_models(register):
    register("tinycnn", build_tinycnn, description="example: a tiny CNN, tinycnn:WIDTH")


@hookimpl
def ndcore_register_datasets(register):
    register("stripes", build_stripes, description="example: in-memory stripes, stripes:N")
