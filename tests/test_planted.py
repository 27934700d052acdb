"""Planted units: unit k outputs (a down-sampled copy of) concept k's mask and must be found."""

import numpy as np
import pytest
from torch import nn

from broden_fixture import write_broden
from ndcore.api import run_dissection
from ndcore.data.broden import BrodenDataset
from ndcore.models import ModelAdapter, Preprocess

CATS = ["object", "scene"]
LABELS = [(1, "square", {"object": 1.0}), (2, "disk", {"object": 1.0}),
          (3, "indoor", {"scene": 1.0}), (4, "outdoor", {"scene": 1.0})]


def make_images(n: int, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = []
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        obj = np.zeros((size, size), np.int32)
        x0, y0 = rng.integers(0, size - 12, 2)
        square = (xx >= x0) & (xx < x0 + 10) & (yy >= y0) & (yy < y0 + 10)
        cx, cy = rng.integers(6, size - 6, 2)
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= 25
        disk &= ~square
        obj[square], obj[disk] = 1, 2
        img[..., 0][square] = 255
        img[..., 1][disk] = 255
        indoor = i % 4 == 0
        img[..., 2] = 255 if indoor else 0
        images.append({"image": img, "planes": {"object": [obj]},
                       "image_labels": {"scene": [3 if indoor else 4]}})
    return images


class Planted(nn.Module):
    """Unit k = channel k of the input, average-pooled by ``factor``."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(factor) if factor > 1 else nn.Identity()
        self.units = nn.Identity()

    def forward(self, x):
        return self.units(self.pool(x))


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory):
    return write_broden(tmp_path_factory.mktemp("planted"), CATS, LABELS, make_images(48))


def fraction(dataset, channel):
    return float(np.mean([dataset.load_image(i)[..., channel] > 0 for i in range(len(dataset))]))


@pytest.mark.parametrize("factor,min_iou", [(1, 0.999), (2, 0.85)])
def test_planted_units_recovered(planted_dataset, factor, min_iou):
    ds = BrodenDataset(planted_dataset)
    adapter = ModelAdapter("planted", Planted(factor), Preprocess((0, 0, 0), (255, 255, 255)))
    expected = {0: "square", 1: "disk", 2: "indoor"}
    for unit, label in expected.items():
        q = fraction(ds, unit) * 1.02  # just over the share of pixels: T falls below the mask values
        result = run_dissection(adapter, ["units"], ds, quantile=q, batch_size=7)
        u = result["units"].units[unit]
        assert u.label == label, (unit, u)
        assert u.iou > min_iou, (unit, u.iou)


def test_best_iou_counts_image_level_labels(planted_dataset):
    """Under --threshold best-iou, a scene (an image-level label) covers its whole image: the
    blue unit detects 'indoor' with the IoU its masks give, computed here directly."""
    ds = BrodenDataset(planted_dataset)
    adapter = ModelAdapter("planted", Planted(1), Preprocess((0, 0, 0), (255, 255, 255)))
    layer = run_dissection(adapter, ["units"], ds, batch_size=7, threshold="best-iou",
                           second_pass="forward")["units"]
    indoor = ds.vocabulary.label_names.index("indoor")
    t = float(layer.best_thresholds[2, indoor])
    masks = np.stack([ds.load_image(i)[..., 2] / 255.0 > t for i in range(len(ds))])
    is_indoor = np.array([i % 4 == 0 for i in range(len(ds))])  # make_images' scenes
    assert is_indoor.any() and masks.any(), "premise: indoor images and a non-empty mask"
    inter = masks[is_indoor].sum()
    union = masks.sum() + is_indoor.sum() * masks[0].size - inter
    assert layer.iou[2, indoor] == pytest.approx(inter / union, abs=1e-12)
    assert layer.units[2].label == "indoor" and layer.units[2].iou > 0.99
