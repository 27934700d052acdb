"""The small networks of the paper-findings study: AlexNet-, VGG- and ResNet-shaped CNNs for
64x64 inputs, each with five dissectable layers named ``conv1`` .. ``conv5`` (post-ReLU).

Every factory takes no argument, so each is a model spec of its own for ndcore's ``python``
adapter (``python:examples/paper-findings/nets.py:vgg_small``, weights with ``--weights``):

    factory              shape                     conv5 units  head
    vgg_small            VGG, BatchNorm            128          supervised (39 logits)
    vgg_small_nobn       VGG, no normalisation     128          supervised
    vgg_small_w2         VGG, BatchNorm            256          supervised
    vgg_small_w4         VGG, BatchNorm            512          supervised
    vgg_small_rotation   VGG, BatchNorm            128          rotation (4 logits)
    alexnet_small        AlexNet (5x5 convs, LRN)  128          supervised
    resnet_small         ResNet (basic blocks)     128          supervised

Supervised heads predict the demo's three tasks (``ndcore.demo.model.TASKS``: 24 scenes,
4 object presences, 11 colour presences) from conv5, average- and max-pooled as the demo CNN
does; the rotation head predicts which of 0/90/180/270 degrees an image was turned by, from
conv5 pooled to 2x2 (which side is up needs a coarse layout, not a global pool).

Inputs: the probe set's 112-pixel images resized to 64 (``Preprocess(resize=...)``), on the
0-255 scale normalised by the demo CNN's mean and std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from ndcore.demo.model import DEMO_MEAN, DEMO_STD, TASKS
from ndcore.models import ModelAdapter, Preprocess

INPUT_SIZE = 64
LAYERS: Tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5")
SUPERVISED_OUTPUTS = sum(len(v) for v in TASKS.values())
ROTATION_OUTPUTS = 4  # 0, 90, 180, 270 degrees


def conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1,
               bn: bool = True) -> nn.Sequential:
    """Conv(-BN)-ReLU: its output is the dissected (post-ReLU) map."""
    layers = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 Conv-BN, a shortcut (1x1 Conv-BN where the shape
    changes), ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(cout)
        self.conv_b = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn_a(self.conv_a(x)))
        return torch.relu(self.bn_b(self.conv_b(y)) + self.shortcut(x))


class SupervisedHead(nn.Module):
    """conv5 average- and max-pooled (as the demo CNN), one linear layer."""

    def __init__(self, channels: int, outputs: int = SUPERVISED_OUTPUTS) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


class RotationHead(nn.Module):
    """conv5 average-pooled to 2x2, one linear layer over the 4 cells (a coarse layout)."""

    def __init__(self, channels: int, outputs: int = ROTATION_OUTPUTS) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


class StudyNet(nn.Module):
    """Stages run in order (``stages``: name -> module, the layers conv1..conv5 among them,
    registered as top-level modules so that they are hooked by their plain names), then the
    head over conv5."""

    def __init__(self, stages: Sequence[Tuple[str, nn.Module]], head: nn.Module) -> None:
        super().__init__()
        self.order = tuple(name for name, _ in stages)
        for name, module in stages:
            self.add_module(name, module)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        return self.head(x)


def _vgg_stages(width: int = 1, bn: bool = True):
    # VGG's shape (stacked 3x3 convs, max-pooling between stages); conv1 strided as the demo
    # CNN's, which halves the cost of training at a small loss of resolution.
    return [("conv1", conv_block(3, 32, stride=2, bn=bn)),
            ("conv2", conv_block(32, 64, bn=bn)), ("pool2", nn.MaxPool2d(2)),
            ("conv3", conv_block(64, 128, bn=bn)), ("pool3", nn.MaxPool2d(2)),
            ("conv4", conv_block(128, 128, bn=bn)),
            ("conv5", conv_block(128, 128 * width, bn=bn))]


def _alexnet_stages():
    # AlexNet's shape, scaled to 64 px: a large strided first kernel, local response
    # normalisation and pooling after conv1 and conv2, three 3x3 convs, no BatchNorm.
    return [("conv1", conv_block(3, 48, kernel=5, stride=2, bn=False)),
            ("norm1", nn.LocalResponseNorm(5)), ("pool1", nn.MaxPool2d(3, 2, padding=1)),
            ("conv2", conv_block(48, 64, kernel=5, bn=False)),
            ("norm2", nn.LocalResponseNorm(5)), ("pool2", nn.MaxPool2d(3, 2, padding=1)),
            ("conv3", conv_block(64, 128, bn=False)),
            ("conv4", conv_block(128, 128, bn=False)),
            ("conv5", conv_block(128, 128, bn=False))]


def _resnet_stages():
    # ResNet's shape: a stem, then one basic block per dissected layer (conv2..conv5 are the
    # blocks' outputs, after the residual sum and its ReLU).
    return [("conv1", conv_block(3, 32, stride=2)),
            ("conv2", BasicBlock(32, 48)),
            ("conv3", BasicBlock(48, 96, stride=2)),
            ("conv4", BasicBlock(96, 128, stride=2)),
            ("conv5", BasicBlock(128, 128))]


def study_adapter(net: nn.Module, name: str) -> ModelAdapter:
    """The model as ndcore dissects it: 64x64 inputs, the demo CNN's normalisation."""
    preprocess = Preprocess(tuple(255.0 * m for m in DEMO_MEAN),
                            tuple(255.0 * s for s in DEMO_STD),
                            resize=(INPUT_SIZE, INPUT_SIZE), name="paper-findings")
    return ModelAdapter(spec=f"python:{Path(__file__).resolve()}:{name}",
                        module=net.eval(), preprocess=preprocess,
                        input_size=(INPUT_SIZE, INPUT_SIZE),
                        description=f"paper-findings {name} (64x64 inputs)")


def _supervised(stages, channels: int) -> StudyNet:
    return StudyNet(stages, SupervisedHead(channels))


# name -> (builder of the bare network, task). The factories below wrap them for ndcore.
NETS: Dict[str, Tuple[Callable[[], StudyNet], str]] = {
    "vgg_small": (lambda: _supervised(_vgg_stages(), 128), "supervised"),
    "vgg_small_nobn": (lambda: _supervised(_vgg_stages(bn=False), 128), "supervised"),
    "vgg_small_w2": (lambda: _supervised(_vgg_stages(width=2), 256), "supervised"),
    "vgg_small_w4": (lambda: _supervised(_vgg_stages(width=4), 512), "supervised"),
    "vgg_small_rotation": (lambda: StudyNet(_vgg_stages(), RotationHead(128)), "rotation"),
    "alexnet_small": (lambda: _supervised(_alexnet_stages(), 128), "supervised"),
    "resnet_small": (lambda: _supervised(_resnet_stages(), 128), "supervised"),
}


def build_net(name: str) -> StudyNet:
    """The bare network ``name`` (a key of ``NETS``), freshly initialised."""
    return NETS[name][0]()


def _factory(name: str) -> Callable[[], ModelAdapter]:
    def factory() -> ModelAdapter:
        return study_adapter(build_net(name), name)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"The study's {name} as an ndcore model (no weights: random init)."
    return factory


vgg_small = _factory("vgg_small")
vgg_small_nobn = _factory("vgg_small_nobn")
vgg_small_w2 = _factory("vgg_small_w2")
vgg_small_w4 = _factory("vgg_small_w4")
vgg_small_rotation = _factory("vgg_small_rotation")
alexnet_small = _factory("alexnet_small")
resnet_small = _factory("resnet_small")
