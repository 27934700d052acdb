"""DemoNet: a small CNN trained on the synthetic dataset, shipped so that ndcore has a model to
dissect out of the box (no download).

It is trained (``python -m ndcore.demo.train``) on three tasks at once, so that its units have
reasons to detect the concepts the synthetic dataset labels: scene classification (backgrounds,
textures), object presence (shapes) and colour presence (colour names). The layers to dissect are
the blocks ``conv1`` .. ``conv5`` (each Conv-BN-ReLU, so a block's output is post-ReLU):

    layer   channels  resolution at 112x112 input
    conv1   32        56x56
    conv2   64        28x28
    conv3   128       28x28
    conv4   128       14x14   (after ``pool``)
    conv5   128       14x14

Input: RGB in [0, 1], normalised by ``DEMO_MEAN``/``DEMO_STD`` (``preprocess`` does it); any
size works (global pooling), 112x112 is the training size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ndcore.data.synthetic import COLOR_NAMES, OBJECTS, SCENES

# ImageNet statistics, RGB on the 0-1 scale: the usual convention for torchvision models, so the
# same preprocessing code path serves DemoNet and them.
DEMO_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
DEMO_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
DEMO_INPUT_SIZE = 112
WEIGHTS_PATH = Path(__file__).with_name("demo_weights.pt")
LAYER_NAMES: Tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5")

# Output logits, in order: one block per task.
TASKS: Dict[str, Tuple[str, ...]] = {"scene": SCENES, "object": OBJECTS, "color": COLOR_NAMES}


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DemoNet(nn.Module):
    """Five Conv-BN-ReLU blocks and one linear head over ``conv5``, average- and max-pooled.

    Average pooling suits the scene and colours (how much of the image); max pooling suits object
    presence (is there one anywhere, however small), and learns it much faster.

    ``forward`` returns all logits concatenated, ``[N, 24 + 4 + 11]`` (scene, object, color);
    ``split_logits`` cuts them per task.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _block(3, 32, stride=2)
        self.conv2 = _block(32, 64, stride=2)
        self.conv3 = _block(64, 128)
        self.pool = nn.MaxPool2d(2)
        self.conv4 = _block(128, 128)
        self.conv5 = _block(128, 128)
        self.fc = nn.Linear(2 * 128, sum(len(v) for v in TASKS.values()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        x = self.conv5(self.conv4(self.pool(x)))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled)

    @staticmethod
    def split_logits(logits: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"scene": [N, 24], "object": [N, 4], "color": [N, 11]}``."""
        sizes = [len(v) for v in TASKS.values()]
        return dict(zip(TASKS, torch.split(logits, sizes, dim=1)))


def preprocess(images: Union[np.ndarray, torch.Tensor, Sequence[np.ndarray]]) -> torch.Tensor:
    """uint8 RGB images ``[N, H, W, 3]`` (or one ``[H, W, 3]``) -> normalised float ``[N, 3, H, W]``."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(DEMO_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DEMO_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def build_demo_model(pretrained: bool = True, weights: Union[str, Path, None] = None) -> DemoNet:
    """DemoNet in eval mode, with the shipped weights (``demo_weights.pt``) unless not pretrained."""
    model = DemoNet()
    if pretrained:
        path = Path(weights) if weights is not None else WEIGHTS_PATH
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing; train it with `python -m ndcore.demo.train --out {path}`")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
