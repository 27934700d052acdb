"""GANPaint's concepts (issue 21, items 6 and 10): every concept of the vocabulary with units
above chance is offered, units are ranked by their IoU for the concept (not by their own
labels), the default k is the units near the best one (capped); and the server's and the
plugin table's refusals (deep JSON, duplicate suggestions)."""

from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ndcore
from ndcore.gan.editing.edits import box_mask
from ndcore.gan.editing.intervene import generate
from ndcore.paint.concepts import (K_CAP, above_chance, chance_iou, concept_units, default_k,
                                   ranking)
from ndcore.paint.server import MAX_DEPTH, Painter, encode_request, json_depth, start_server
from planted_generator import COLORS, Planted

TWO_TONE = f"python:{Path(__file__).resolve()}:build_two_tone"
SIZE = (32, 32)


class TwoTone(Planted):
    """The planted generator (unit k paints colour k), but unit 0's blob is black inside a red
    ring: black is unit 0's label, and red is no unit's label though unit 0 paints it."""

    def forward(self, z):
        maps = self.units(z)
        up = F.interpolate(maps, size=SIZE, mode="bilinear", align_corners=False)
        best, k = up.max(1)
        rgb = COLORS.to(maps.device)[k].permute(0, 3, 1, 2)
        core = ((k == 0) & (best > 0.6))[:, None]
        rgb = torch.where(core, torch.zeros_like(rgb), rgb)
        img = torch.where((best > 0.3)[:, None], rgb, torch.full_like(rgb, 128.0))
        return img / 127.5 - 1


def build_two_tone():
    return TwoTone()


# -- the rule, on IoU matrices ----------------------------------------------------------------

NAMES = ["-", "black", "brown", "red", "none"]
CATS = ["", "color", "color", "color", ""]  # 'none' has no category: never offered


def test_units_are_ranked_by_their_iou_for_the_concept_not_their_label():
    # unit 0 is labelled brown (0.30) but is the best black unit (0.20); unit 2's black IoU
    # (0.10) beats its chance level only without chance statistics
    iou = np.array([[0, 0.20, 0.30, 0.00, 0.9],
                    [0, 0.15, 0.05, 0.00, 0.9],
                    [0, 0.10, 0.02, 0.03, 0.9]])
    null = np.array([[0, 0.05, 0.10, 0.01, 0.0],
                     [0, 0.05, 0.10, 0.01, 0.0],
                     [0, 0.12, 0.10, 0.01, 0.0]])
    found = {c.name: c for c in concept_units(iou, NAMES, CATS, null, cutoff=0.04)}
    assert sorted(found) == ["black", "brown", "red"]  # red: 0.03 beats its null of 0.01
    assert found["black"].units == [0, 1] and found["black"].ious == [0.20, 0.15]
    assert found["brown"].units == [0] and found["red"].units == [2]
    assert [c.name for c in concept_units(iou, NAMES, CATS, null, 0.04)] == \
        ["brown", "black", "red"]  # best IoU first
    # without chance statistics: above the cut-off
    found = {c.name: c for c in concept_units(iou, NAMES, CATS, None, cutoff=0.04)}
    assert sorted(found) == ["black", "brown"]  # red's 0.03 is under 0.04
    assert found["black"].units == [0, 1, 2] and found["brown"].units == [0, 1]
    assert not above_chance(np.zeros((2, 3)), np.zeros((2, 3)), 0.0).any()  # IoU 0 never


def test_default_k_is_the_units_near_the_best_capped():
    # issue 21: a best-IoU run gave brown 91 of 128 units as its default k
    rng = np.random.default_rng(0)
    column = np.concatenate([[0.31, 0.29, 0.2], rng.uniform(0.05, 0.14, 88), np.zeros(37)])
    iou = np.zeros((128, 3))
    iou[:, 2] = column
    (brown,) = concept_units(iou, NAMES[:3], CATS[:3], None, cutoff=0.04)
    assert len(brown.units) == 91 and brown.k == 3  # 0.31, 0.29, 0.2 >= 0.155
    assert default_k([0.5, 0.01, 0.01]) == 1
    assert default_k([0.3] * 100) == K_CAP
    assert default_k([0.3, 0.15, 0.149]) == 2  # at least half of the best's
    assert ranking(np.array([0.1, 0.5, 0.3, 0.0]), [2]) == [2, 1, 0, 3]


def test_chance_npz_is_read_when_the_view_has_none(tmp_path):
    iou = np.array([[0.0, 0.2, 0.3], [0.0, 0.1, 0.05]])
    layer = SimpleNamespace(significance=None, layer="main.8", iou=iou)
    assert chance_iou(layer, tmp_path) is None
    (tmp_path / "main.8").mkdir()
    null = np.full(iou.shape, 0.07, dtype=np.float32)
    np.savez_compressed(tmp_path / "main.8" / "chance.npz", p_value=np.ones(iou.shape),
                        null_iou95=null)
    assert np.array_equal(chance_iou(layer, tmp_path), null)


# -- a run where a concept is no unit's label -------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts")
    ndcore.dissect_generator(TWO_TONE, ["units"], "colors", root / "quantile", samples=200,
                             seed=1, quantile=0.05, batch_size=50)
    ndcore.dissect_generator(TWO_TONE, ["units"], "colors", root / "best", samples=200,
                             seed=1, threshold="best-iou", batch_size=50)
    return root


@pytest.fixture(scope="module")
def painter(runs):
    return Painter(runs / "quantile", "units")


@pytest.fixture(scope="module")
def server(painter):
    url, stop = start_server(painter)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop()


def test_a_concept_that_is_no_units_label_is_offered_and_painted(server, painter):
    lr = painter.layer
    assert [u.label for u in lr.units] == ["black", "green", "blue", "yellow"]
    info = server.get("/api/info").json()
    assert info["concept_rule"]["above"] == "chance"
    concepts = {c["name"]: c for c in info["concepts"]}
    assert sorted(concepts) == ["black", "blue", "green", "red", "yellow"]
    red = lr.vocabulary.label_names.index("red")
    null = lr.significance.null_iou95_label
    assert lr.iou[0, red] > null[0, red] and concepts["red"] == {
        "name": "red", "units": 1, "k": 1, "best_iou": round(float(lr.iou[0, red]), 4),
        "category": "color"}
    # removing red in the left half takes out unit 0's blob there, with its black core
    seed = next(s for s in range(200) if (generate(painter.run, [0], s)[0] == 0).all(0)
                [:, :12].sum() >= 6)
    reply = server.post("/api/edit", json=encode_request(seed, "ablate", "red",
                                                         box_mask((0, 0, 16, 32), SIZE)))
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["edit"]["concept"] == "red" and data["edit"]["units"] == [0]
    assert data["units"] == [{"unit": 0, "iou": round(float(lr.iou[0, red]), 4),
                              "label": "black", "value": 0.0, "above_chance": True}]
    # k beyond the concept's units: the rest by IoU for red, flagged below chance
    data = server.post("/api/edit", json=encode_request(seed, "ablate", "red",
                                                        box_mask((0, 0, 16, 32), SIZE),
                                                        k=3)).json()
    order = sorted(range(1, 4), key=lambda u: (-lr.iou[u, red], u))
    assert [r["unit"] for r in data["units"]] == [0] + order[:2]
    assert [r["above_chance"] for r in data["units"]] == [True, False, False]


def test_concepts_without_units_above_chance_are_refused_with_the_reason(server):
    reply = server.post("/api/edit", json=encode_request(
        1, "ablate", "orange", box_mask((0, 0, 8, 8), SIZE)))
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert message.startswith("concept 'orange': no unit of layer 'units' beats chance for "
                              "it (IoU above the run's null_iou95); offered: ")
    assert "\n" not in message
    reply = server.post("/api/edit", json=encode_request(
        1, "ablate", "orangey", box_mask((0, 0, 8, 8), SIZE)))
    assert reply.status_code == 400 and reply.json()["error"].startswith(
        "unknown concept 'orangey'")


def test_a_best_iou_run_without_chance_uses_the_cutoff(runs):
    painter = Painter(runs / "best", "units")
    lr = painter.layer
    assert lr.significance is None and painter.concept_rule == "cutoff"
    names = lr.vocabulary.label_names
    for c in painter.concepts:
        column = lr.iou[:, names.index(c["name"])]
        assert c["units"] == int((column > lr.cutoff).sum()) >= 1
        assert c["k"] == default_k(sorted(column[column > lr.cutoff].tolist(), reverse=True))
    assert {"black", "red", "green", "blue", "yellow"} <= {c["name"] for c in painter.concepts}
    assert painter.info()["concept_rule"] == {"above": "cutoff", "k_fraction": 0.5,
                                              "k_cap": K_CAP}
    painter.run.close()


# -- refusals ---------------------------------------------------------------------------------

def test_deeply_nested_json_is_a_400_not_a_500(server):
    # issue 21: a 40 KB body of nested JSON raised RecursionError in json.loads (a 500)
    for body in (b"[" * 10000 + b"]" * 10000, b'{"region": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        reply = server.post("/api/edit", content=body,
                            headers={"content-type": "application/json"})
        assert reply.status_code == 400, reply.text[:200]
        assert reply.json()["error"].startswith("JSON nested ")
    # brackets inside strings are not nesting
    text = b'{"concept": "' + b"[{" * 100 + b'\\"]"}'
    assert json_depth(text) == 1
    reply = server.post("/api/edit", content=text, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "nested" not in reply.json()["error"]
    assert json_depth(b'{"region": {"size": [32, 32], "rle": [1, 2]}}') == 3 <= MAX_DEPTH
    assert json_depth(b"") == 0 and json_depth(b"3") == 0
    assert json_depth(b'["a\\\\", [[1]]]') == 3  # an escaped backslash ends the string
    assert json_depth(b'"\\\\\\"[[" [[') == 2  # \\\" is an escaped quote: still inside
    assert json_depth(b'"' + b'a\\"[' * 100_000) == 0  # unterminated: linear, no backtracking


def test_unknown_adapter_suggestions_name_each_adapter_once():
    from ndcore.plugins.manager import get_plugin_manager

    with pytest.raises(ndcore.errors.PluginError) as e:
        get_plugin_manager().find("model", "dcgan-face")
    assert "(did you mean: dcgan-faces?)" in str(e.value)
