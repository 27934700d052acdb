"""The Broden reader on generated fixtures, and each kind of bad input."""

import csv

import numpy as np
import torch
import pytest
from PIL import Image
from torch import nn

from broden_fixture import write_broden
from ndcore.api import run_dissection
from ndcore.data.broden import BrodenDataset
from ndcore.data.probe import stack_items
from ndcore.errors import ActivationError, DatasetError, LayerError, OutputError
from ndcore.models import ModelAdapter, Preprocess

CATS = ["object", "part", "scene", "color"]
LABELS = [
    (1, "dog", {"object": 0.3}),
    (2, "leg", {"part": 0.2}),
    (3, "circle", {"object": 0.1, "part": 0.4}),  # two categories, primary part
    (4, "kitchen", {"scene": 1.0}),
    (5, "red", {"color": 0.5}),
    (6, "tie", {"object": 0.2, "part": 0.2}),  # a tie goes to the later category (part)
]


def sample_images():
    img = np.full((8, 8, 3), 100, np.uint8)
    obj1 = np.zeros((4, 4), int); obj1[:2, :2] = 1
    obj2 = np.zeros((4, 4), int); obj2[:2, :2] = 3; obj2[3, 3] = 1  # repeats "dog" under obj1? no
    obj2[0, 0] = 1  # same label as plane 1 at (0, 0): must be removed as a repeat
    part = np.zeros((4, 4), int); part[2:, :] = 2
    color = np.full((4, 4), 5)
    return [
        {"image": img, "planes": {"object": [obj1, obj2], "part": [part], "color": [color]},
         "image_labels": {"scene": [4]}},
        {"image": img, "planes": {"color": [color]}},  # only color annotated
        {"image": img, "planes": {"object": [obj1], "color": [color]}, "image_labels": {"scene": [4, 4]}},
    ]


@pytest.fixture()
def broden(tmp_path):
    return write_broden(tmp_path / "broden", CATS, LABELS, sample_images())


def test_reads_vocabulary_and_primary_categories(broden):
    ds = BrodenDataset(broden)
    v = ds.vocabulary
    assert v.categories == CATS
    assert v.label_names[1:] == ["dog", "leg", "circle", "kitchen", "red", "tie"]
    prim = {v.label_names[l]: v.categories[v.primary[l]] for l in range(1, v.num_labels)}
    assert prim == {"dog": "object", "leg": "part", "circle": "part", "kitchen": "scene",
                    "red": "color", "tie": "part"}
    assert sorted(v.label_categories[3]) == ["object", "part"]


def test_reads_items_planes_and_image_labels(broden):
    ds = BrodenDataset(broden)
    item = ds[0]
    assert item.error is None
    assert item.image.shape == (8, 8, 3) and item.planes.shape == (4, 4, 4)
    assert item.planes[0][0, 0] == 1 and item.planes[1][0, 0] == 0  # repeat removed
    assert item.planes[1][1, 1] == 3
    assert list(item.image_labels) == [4]
    assert item.annotated.tolist() == [True, True, True, True]
    assert ds[1].annotated.tolist() == [False, False, False, True]
    assert list(ds[2].image_labels) == [4]  # repeated image-level label counted once
    batch = stack_items([ds[0], ds[1], ds[2]])
    assert batch.labels.shape == (3, 4, 4, 4)  # planes padded to the largest count
    assert batch.labels[1, 1:].abs().sum() == 0
    assert batch.image_labels.tolist() == [[4], [0], [4]]


def test_category_subset(broden):
    ds = BrodenDataset(broden, categories=["object", "color"])
    assert ds.vocabulary.categories == ["object", "color"]
    item = ds[0]
    assert item.planes.shape[0] == 3  # 2 object planes + color
    assert list(item.image_labels) == []  # scene not selected
    v = ds.vocabulary
    assert v.categories[v.primary[3]] == "object"  # circle moves to its remaining category
    assert v.primary[2] == -1  # leg: part only
    with pytest.raises(DatasetError, match="no category 'objekt'.*did you mean: object"):
        BrodenDataset(broden, categories=["objekt"])


def rewrite_index(root, fn):
    path = root / "index.csv"
    rows = list(csv.reader(open(path)))
    fn(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def first_item_error(root):
    ds = BrodenDataset(root)
    errors = [ds[i].error for i in range(len(ds)) if ds[i].error]
    assert errors, "expected a broken item"
    return errors[0]


def test_missing_image(broden):
    (broden / "images" / "src" / "img0001.png").unlink()
    assert "img0001.png: image file not found" in first_item_error(broden)


def test_corrupt_image(broden):
    (broden / "images" / "src" / "img0002.png").write_bytes(b"not a png at all")
    assert "img0002.png: cannot decode image" in first_item_error(broden)


def test_corrupt_label_png(broden):
    (broden / "images" / "src" / "img0000_part_1.png").write_bytes(b"\x89PNG garbage")
    assert "img0000_part_1.png: cannot decode label PNG" in first_item_error(broden)


def test_label_number_not_in_label_csv(broden):
    plane = np.zeros((4, 4, 3), np.uint8)
    plane[0, 0, 0] = 9  # label 9 does not exist
    plane[1, 1, 1] = 1  # label 256 does not exist either
    Image.fromarray(plane).save(broden / "images" / "src" / "img0000_part_1.png")
    err = first_item_error(broden)
    assert "img0000_part_1.png" in err and "[9, 256] not in label.csv" in err


def test_image_level_label_not_in_label_csv(broden):
    rewrite_index(broden, lambda rows: rows[1].__setitem__(8, "77"))
    with pytest.raises(DatasetError, match=r"index.csv line 2: image-level label 77 \(scene\)"):
        BrodenDataset(broden)


def test_path_escaping_dataset_is_refused(broden):
    rewrite_index(broden, lambda rows: rows[1].__setitem__(0, "../../etc/passwd"))
    with pytest.raises(DatasetError, match="index.csv line 2: path '../../etc/passwd' leaves"):
        BrodenDataset(broden)
    rewrite_index(broden, lambda rows: rows[1].__setitem__(0, "/etc/passwd"))
    with pytest.raises(DatasetError, match="index.csv line 2: path '/etc/passwd' leaves"):
        BrodenDataset(broden)


def test_empty_dataset(broden):
    rewrite_index(broden, lambda rows: rows.__delitem__(slice(1, None)))
    with pytest.raises(DatasetError, match="has no images"):
        BrodenDataset(broden)


def test_missing_index(broden):
    (broden / "index.csv").unlink()
    with pytest.raises(DatasetError, match="index.csv: file not found"):
        BrodenDataset(broden)


def test_wrong_plane_size(broden):
    Image.fromarray(np.zeros((5, 4, 3), np.uint8)).save(broden / "images" / "src" / "img0000_part_1.png")
    assert "label plane is 5x4, expected 4x4" in first_item_error(broden)


# -- errors raised by a run -------------------------------------------------------------------

def identity_adapter():
    torch.manual_seed(0)  # the same weights every time: the same run
    return ModelAdapter("id", nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()),
                        Preprocess((0, 0, 0), (255, 255, 255)))


def test_broken_image_stops_run_with_its_file_name(broden):
    (broden / "images" / "src" / "img0001.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="img0001.png: cannot decode image"):
        run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), batch_size=2)


def test_broken_image_in_worker_process(broden):
    (broden / "images" / "src" / "img0001.png").write_bytes(b"junk")
    with pytest.raises(DatasetError) as err:
        run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), batch_size=2, workers=1)
    assert "img0001.png: cannot decode image" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_unknown_layer_suggests_close_names(broden):
    from collections import OrderedDict

    model = nn.Sequential(OrderedDict(features=nn.Sequential(nn.Conv2d(3, 2, 1)), flat=nn.Flatten()))
    adapter = ModelAdapter("named", model, Preprocess((0, 0, 0), (255, 255, 255)))
    with pytest.raises(LayerError, match=r"layer 'features.1' not found.*did you mean: features.0"):
        run_dissection(adapter, ["features.1"], BrodenDataset(broden))
    run_dissection(adapter, ["features.0"], BrodenDataset(broden))  # nested dotted names work


def test_layer_layout_undecidable(broden):
    """[B, N, C] with no declared layout: refused, suggesting --layout (never guessed)."""
    torch.manual_seed(0)
    adapter = ModelAdapter("id3", nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(2)),
                           Preprocess((0, 0, 0), (255, 255, 255)))
    with pytest.raises(LayerError, match="layout is not declared; say --layout 1="):
        run_dissection(adapter, ["1"], BrodenDataset(broden), batch_size=3)


class NaNUnit(nn.Module):
    def forward(self, x):
        x = x[:, :2].clone()
        x[:, 1, 0, 0] = float("nan")
        return x


def test_nan_activations_name_layer_and_unit(broden):
    model = nn.Sequential(NaNUnit())
    adapter = ModelAdapter("nan", model, Preprocess((0, 0, 0), (255, 255, 255)))
    with pytest.raises(ActivationError, match=r"layer '0': NaN or Inf activations in unit\(s\) \[1\]"):
        run_dissection(adapter, ["0"], BrodenDataset(broden))


def test_output_dir_with_a_different_run(broden, tmp_path):
    out = tmp_path / "run"
    run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), out)
    run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), out)  # same run: fine
    with pytest.raises(OutputError, match="holds a different run .*--overwrite"):
        run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), out, quantile=0.01)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        run_dissection(identity_adapter(), ["0"], BrodenDataset(broden), other)
    assert (other / "notes.txt").read_text() == "mine"
