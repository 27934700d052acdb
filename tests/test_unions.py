"""The three union conventions against a hand-computed example (docs/method.md section 5).

One unit, 2x2 maps at the label resolution (no interpolation), threshold 0.5.
Labels: a (object), b (object and part; primary part), s (scene, image-level).

    img0: object + scene annotated; object plane [[a, a], [0, b]]; scene label s; mask [[1,0],[1,0]]
    img1: only part annotated;      part plane   [[b, b], [0, 0]];                mask all ones
    img2: only object annotated;    object plane all 0;                           mask [[0,0],[0,1]]

Intersections: a 1, b 2, s 2 (image-level: the whole mask of img0).  Truth: a 2, b 3, s 4.
paper: act(a) = img0+img2 = 3, act(b) = all = 7, act(s) = img0 = 2
lite:  act(a) = 2 (only img0 touches an object label), act(b) = 4 (img1), act(s) = 2
plain: act = 7 for every label
"""

import numpy as np
import pytest
from torch import nn

from broden_fixture import write_broden
from ndcore.api import run_dissection
from ndcore.models import ModelAdapter, Preprocess

A, B, S = 1, 2, 3
EXPECTED = {
    "paper": {"a": 1 / (3 + 2 - 1), "b": 2 / (7 + 3 - 2), "s": 2 / (2 + 4 - 2)},
    "lite": {"a": 1 / (2 + 2 - 1), "b": 2 / (4 + 3 - 2), "s": 2 / (2 + 4 - 2)},
    "plain": {"a": 1 / (7 + 2 - 1), "b": 2 / (7 + 3 - 2), "s": 2 / (7 + 4 - 2)},
}


def image_with_mask(mask):
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = np.asarray(mask, np.uint8) * 255
    return img


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("unions")
    data = write_broden(
        root / "data", ["object", "part", "scene"],
        [(A, "a", {"object": 1.0}), (B, "b", {"object": 0.1, "part": 0.5}), (S, "s", {"scene": 1.0})],
        [
            {"image": image_with_mask([[1, 0], [1, 0]]),
             "planes": {"object": [np.array([[A, A], [0, B]])]}, "image_labels": {"scene": [S]}},
            {"image": image_with_mask([[1, 1], [1, 1]]), "planes": {"part": [np.array([[B, B], [0, 0]])]}},
            {"image": image_with_mask([[0, 0], [0, 1]]), "planes": {"object": [np.zeros((2, 2), int)]}},
        ],
    )
    thresholds = root / "thr.npy"
    np.save(thresholds, np.full(3, 0.5, np.float32))
    adapter = ModelAdapter("identity", nn.Sequential(nn.Identity()), Preprocess((0, 0, 0), (255, 255, 255)))
    return data, thresholds, adapter, root


@pytest.mark.parametrize("union", ["paper", "lite", "plain"])
def test_union_conventions(run_dirs, union):
    data, thresholds, adapter, root = run_dirs
    result = run_dissection(adapter, ["0"], f"broden:{data}", thresholds={"0": str(thresholds)},
                            union=union, batch_size=2)
    lr = result["0"]
    names = lr.vocabulary.label_names
    for label, iou in EXPECTED[union].items():
        assert lr.iou[0, names.index(label)] == pytest.approx(iou), (union, label)
    assert lr.vocabulary.categories[lr.vocabulary.primary[B]] == "part"


def test_relabel_with_other_union_matches_fresh_run(run_dirs):
    data, thresholds, adapter, root = run_dirs
    out = root / "run"
    run_dissection(adapter, ["0"], f"broden:{data}", out, thresholds={"0": str(thresholds)})
    from ndcore import load_result

    for union in ("lite", "plain"):
        lr = load_result(out, union=union)["0"]
        for label, iou in EXPECTED[union].items():
            assert lr.iou[0, lr.vocabulary.label_names.index(label)] == pytest.approx(iou)
