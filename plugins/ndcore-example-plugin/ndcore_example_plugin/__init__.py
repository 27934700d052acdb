"""An example ndcore plugin: one model adapter and one dataset adapter (probe source)."""

from __future__ import annotations

import numpy as np
from torch import nn

from ndcore import hookimpl
from ndcore.data.probe import ProbeItem, ProbeSource, ProbeSourceInfo
from ndcore.data.vocabulary import Vocabulary
from ndcore.models import ModelAdapter, ModelRequest, Preprocess, apply_weights

__version__ = "0.1.0"


def build_tinycnn(target: str, request: ModelRequest) -> ModelAdapter:
    width = int(target or 8)
    module = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
    sha = apply_weights(module, request, f"tinycnn:{width}")  # --weights, or --random-init
    return ModelAdapter(spec=f"tinycnn:{width}", module=module,
                        preprocess=Preprocess((0, 0, 0), (255, 255, 255), name="unit"),
                        input_size=(32, 32), weights=request.weights, weights_sha256=sha)


class Stripes(ProbeSource):
    """Images with red vertical stripes; label 1 'stripe' (object) marks them, pixel by pixel."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed = size, seed
        self.vocabulary = Vocabulary(["object"], ["-", "stripe"], [[], ["object"]],
                                     np.array([-1, 0]))
        self.info = ProbeSourceInfo(spec=f"stripes:{size}", kind="stripes", size=size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> ProbeItem:
        rng = np.random.default_rng(self.seed * 100003 + index)
        x0, width = int(rng.integers(0, 24)), int(rng.integers(2, 8))
        image = np.zeros((32, 32, 3), np.uint8)
        image[:, x0:x0 + width, 0] = 255
        plane = np.zeros((1, 16, 16), np.int32)
        plane[0, :, x0 // 2:(x0 + width + 1) // 2] = 1
        return ProbeItem(index=index, image=image, planes=plane, image_labels=[],
                         annotated=np.array([True]), label_size=(16, 16))


def build_stripes(target: str, request) -> Stripes:
    return Stripes(int(target or 64))


@hookimpl
def ndcore_register_models(register):
    register("tinycnn", build_tinycnn, description="example: a tiny CNN, tinycnn:WIDTH")


@hookimpl
def ndcore_register_datasets(register):
    register("stripes", build_stripes, description="example: in-memory stripes, stripes:N")
