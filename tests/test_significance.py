"""Chance and confidence of labels (docs/method.md sections 14-15): the draws, the per-image
counts behind the bootstrap, the bootstrap against a direct resampling oracle, calibration on
units that know nothing, planted colour units, recomputation from a saved run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broden_fixture import write_broden  # noqa: E402
from test_planted import CATS, LABELS, Planted, fraction, make_images  # noqa: E402

from ndcore.api import run_dissection  # noqa: E402
from ndcore.data.broden import BrodenDataset  # noqa: E402
from ndcore.data.labelspace import LabelSpace  # noqa: E402
from ndcore.data.probe import ProbeSource  # noqa: E402
from ndcore.engine import DissectOptions  # noqa: E402
from ndcore.engine.statistics.counts import (  # noqa: E402
    TallyCounts, batch_counts, image_counts)
from ndcore.engine.statistics.resamples import (  # noqa: E402
    _take, bootstrap_weights, null_partners)
from ndcore.engine.stream import BatchGrid, ProbeStream  # noqa: E402
from ndcore.errors import NdcoreError  # noqa: E402
from ndcore.models import ModelAdapter, Preprocess  # noqa: E402
from ndcore.results import DissectionResult  # noqa: E402
from ndcore.results.significance import benjamini_hochberg, best_labels  # noqa: E402


# -- the draws -------------------------------------------------------------------------------

def test_bootstrap_weights_are_poisson_one_and_depend_on_the_index_alone():
    indices = np.arange(200_000)
    w = bootstrap_weights(7, 3, indices)
    assert abs(w.mean() - 1.0) < 0.01 and abs(w.var() - 1.0) < 0.02
    # P(w = k) = e^-1 / k!
    for k, p in enumerate([0.3679, 0.3679, 0.1839, 0.0613]):
        assert abs(np.mean(w == k) - p) < 0.004, k
    # the same index gets the same weight in any batch, order or shard
    some = np.array([5, 123_456, 17, 99])
    assert np.array_equal(bootstrap_weights(7, 3, some), w[some])
    assert not np.array_equal(bootstrap_weights(7, 4, indices[:1000]), w[:1000])
    assert not np.array_equal(bootstrap_weights(8, 3, indices[:1000]), w[:1000])


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_null_partners_pair_every_image_with_another(n):
    indices = np.arange(1000, 1000 + n)
    for k in range(5):
        partners = null_partners(0, k, indices)
        assert sorted(partners.tolist()) == list(range(n))  # every image's labels used once
        assert not np.any(partners == np.arange(n))  # no image keeps its own labels
        # one cycle through the batch
        seen, at = set(), 0
        for _ in range(n):
            seen.add(at)
            at = partners[at]
        assert len(seen) == n
        assert np.array_equal(partners, null_partners(0, k, indices))  # seeded
    assert not all(np.array_equal(null_partners(0, 0, indices), null_partners(0, k, indices))
                   for k in range(1, 5)) or n == 2


def test_benjamini_hochberg_against_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = np.concatenate([rng.random(40), rng.random(10) * 1e-3])
        q = 0.1
        ranked = np.sort(p)
        k = max([i + 1 for i in range(len(p)) if ranked[i] <= q * (i + 1) / len(p)], default=0)
        expected = p <= ranked[k - 1] if k else np.zeros(len(p), bool)
        assert np.array_equal(benjamini_hochberg(p, q), expected)


# -- per-image counts: a weighted batch equals the batch with images repeated -------------------

def _synthetic_batch(batch_id=2, size=16):
    from ndcore.data.synthetic import ensure_synthetic

    source = BrodenDataset(ensure_synthetic(size=200, seed=0, image_size=112, label_size=56))
    labelspace = LabelSpace(source.vocabulary)
    stream = ProbeStream(source, labelspace, BatchGrid(len(source), size, 0, 1),
                         torch.device("cpu"), 0, None)
    _, batch = next(iter(stream.batches([batch_id], image=False, labels=True)))
    return batch, labelspace


def test_weighted_image_counts_equal_a_batch_of_repeated_images():
    batch, ls = _synthetic_batch()
    assert bool((batch.image_labels > 0).any()), "premise: the batch has image-level labels"
    torch.manual_seed(0)
    maps = torch.randn(len(batch), 24, 7, 7)
    thresholds = torch.quantile(maps.transpose(0, 1).reshape(24, -1), 0.95, dim=1)
    group = torch.as_tensor(ls.id_group)
    per_image = image_counts(maps, thresholds, batch, ls, group)
    whole = batch_counts(maps, thresholds, batch, ls, group)
    for name in ("intersection", "truth", "area", "group_hits"):
        assert torch.equal(getattr(per_image.batch, name), getattr(whole, name)), name
    for resample in range(4):
        w = torch.as_tensor(bootstrap_weights(0, resample, batch.indices.numpy()))
        assert (w == 0).any() and (w > 1).any(), "premise: images left out and repeated"
        weighted = TallyCounts(thresholds, ls)
        weighted.add_images(per_image, batch, w)
        rows = torch.repeat_interleave(torch.arange(len(batch)), w)
        repeated = TallyCounts(thresholds, ls)
        repeated.add(maps[rows], _take(batch, rows, rows))
        a, b = weighted.state_dict(), repeated.state_dict()
        for key in a:
            assert np.array_equal(a[key], b[key]), (resample, key)


# -- the bootstrap against a direct resampling oracle -----------------------------------------

class Repeated(ProbeSource):
    """A probe source whose image i is image ``rows[i]`` of ``source`` (a bootstrap resample)."""

    def __init__(self, source, rows):
        self.source, self.rows = source, list(rows)
        self.vocabulary, self.info = source.vocabulary, source.info

    def __len__(self):
        return len(self.rows)

    def read(self, index, image=True, labels=True):
        item = self.source.read(self.rows[index], image=image, labels=labels)
        return dataclasses.replace(item, index=index)

    def __getitem__(self, index):
        return self.read(index)


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory):
    return write_broden(tmp_path_factory.mktemp("planted_sig"), CATS, LABELS, make_images(48))


@pytest.mark.parametrize("union", ["paper", "lite"])
def test_bootstrap_interval_and_stability_equal_direct_resampling(planted_dataset, tmp_path,
                                                                  union):
    source = BrodenDataset(planted_dataset)
    adapter = ModelAdapter("planted", Planted(2), Preprocess((0, 0, 0), (255, 255, 255)))
    B = 12
    result = run_dissection(adapter, ["units"], source, quantile=0.1, batch_size=7,
                            bootstrap=B, null_permutations=0, resample_seed=3, union=union)
    layer = result["units"]
    np.save(tmp_path / "t.npy", layer.thresholds)
    ious, bests = [], []
    for b in range(B):
        weights = bootstrap_weights(3, b, np.arange(len(source)))
        rows = np.repeat(np.arange(len(source)), weights)
        again = run_dissection(adapter, ["units"], Repeated(source, rows), batch_size=5,
                               thresholds={"units": str(tmp_path / "t.npy")}, union=union,
                               bootstrap=0, null_permutations=0)["units"]
        ious.append(again.iou)
        bests.append(best_labels(again.iou, again.vocabulary))
    ious, bests = np.stack(ious), np.stack(bests)
    for u in layer.units:
        if u.label_number == 0:
            assert u.stats["iou_ci"] is None
            continue
        low, high = np.percentile(ious[:, u.unit, u.label_number], [2.5, 97.5])
        assert u.stats["iou_ci"] == pytest.approx([low, high], abs=1e-12), u.unit
        assert u.stats["label_stability"] == np.mean(bests[:, u.unit] == u.label_number)
    spread = [u.stats["iou_ci"][1] - u.stats["iou_ci"][0] for u in layer.units
              if u.label_number]
    assert max(spread) > 0, "premise: the resamples differ"
    # relabelled to the other union: lite needs counts a paper run's resamples do not keep
    other = DissectionResult({"units": layer}, layer.vocabulary, {}).relabel(
        "lite" if union == "paper" else "paper")["units"]
    if union == "paper":
        assert other.significance.iou_ci is None and "lite" in other.significance.note
    else:
        assert other.significance.iou_ci is not None


def test_best_labels_choose_as_the_layer_result_does(planted_dataset):
    source = BrodenDataset(planted_dataset)
    adapter = ModelAdapter("planted", Planted(2), Preprocess((0, 0, 0), (255, 255, 255)))
    layer = run_dissection(adapter, ["units"], source, quantile=0.3, batch_size=7,
                           bootstrap=0, null_permutations=0)["units"]
    for union in ("paper", "lite", "plain"):
        relabelled = layer if union == layer.union else \
            DissectionResult({"units": layer}, layer.vocabulary, {}).relabel(union)["units"]
        assert best_labels(relabelled.iou, relabelled.vocabulary).tolist() == \
            [u.label_number for u in relabelled.units]


# -- calibration: units that know nothing; planted colour units --------------------------------

class Noise(nn.Module):
    """Maps of noise independent of the image: drawn in call order from one seeded generator
    (so pass 2 must come from the kept maps, which serve it exactly)."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.units, self.out = units, nn.Identity()
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x):
        return self.out(torch.randn(x.shape[0], self.units, 7, 7, generator=self.generator))


def _synthetic_run(module, out, images=300, **options):
    adapter = ModelAdapter("test", module, Preprocess((0, 0, 0), (255, 255, 255)))
    return run_dissection(adapter, ["out"], "synthetic", out, max_images=images, batch_size=50,
                          second_pass="cache", **options)["out"]


def test_units_that_know_nothing_are_not_significant(tmp_path):
    units = 256
    layer = _synthetic_run(Noise(units), tmp_path / "noise")
    summary = layer.summary()
    # premise: each noise unit still gets a best label with some IoU, and the p-values are
    # real numbers, not all 1
    assert sum(u.iou > 0 for u in layer.units) > 0.9 * units
    assert (layer.significance.p_label < 1).sum() > 100
    assert summary["detectors_fdr"] <= 0.05 * units, summary
    # per (unit, label), a p-value is no smaller than its level in more than that share
    p = layer.significance.p_label[:, layer.vocabulary.primary >= 0][:, 1:]
    for level in (0.5, 0.1, 0.01):
        assert np.mean(p <= level) <= level


@pytest.mark.parametrize("images", [48, 120])
def test_planted_colour_units_are_significant_narrow_and_stable(tmp_path, images):
    """Unit k is the input's colour channel k (red squares, green disks, blue indoor scenes),
    as in test_planted; each at the quantile that makes its mask the colour's pixels."""
    source = BrodenDataset(write_broden(tmp_path, CATS, LABELS, make_images(images)))
    adapter = ModelAdapter("planted", Planted(2), Preprocess((0, 0, 0), (255, 255, 255)))
    for unit, label in {0: "square", 1: "disk", 2: "indoor"}.items():
        layer = run_dissection(adapter, ["units"], source, quantile=fraction(source, unit) * 1.02,
                               batch_size=7)["units"]
        u = layer.units[unit]
        assert u.label == label and u.iou > 0.85, (unit, u)  # premise: a strong detector
        assert u.stats["significant"] and u.stats["p_value"] < 1e-3, (unit, u.stats)
        low, high = u.stats["iou_ci"]
        assert low <= u.iou <= high and high - low < 0.05, (unit, u.stats)
        assert u.stats["label_stability"] >= 0.95, (unit, u.stats)
        assert u.iou > 2 * u.stats["null_iou95"], (unit, u.stats)


# -- recomputed from a saved run ----------------------------------------------------------------

def test_another_fdr_or_cutoff_from_the_saved_run(tmp_path):
    out = tmp_path / "run"
    fresh = run_dissection("demo", ["conv3"], "synthetic", out, max_images=400, batch_size=50,
                           fdr=0.2, cutoff=0.02)["conv3"]
    loaded = DissectionResult.load(out, fdr=0.2, cutoff=0.02)["conv3"]
    assert fresh.summary() == loaded.summary()
    saved = json.loads((out / "conv3" / "summary.json").read_text())
    assert saved["summary"]["detectors_fdr"] == fresh.summary()["detectors_fdr"]
    strict = DissectionResult.load(out, fdr=0.001)["conv3"].summary()
    assert strict["detectors_fdr"] <= fresh.summary()["detectors_fdr"]
    assert fresh.summary()["detectors_fdr"] > 0, "premise: the demo CNN has significant units"
    # a view restricted to fewer categories keeps the bootstrap, says why it has no p-values
    restricted = DissectionResult.load(out, categories=["color"])["conv3"]
    if restricted.significance.p_value is None:
        assert "categories" in restricted.significance.note
    assert restricted.significance.label_stability is not None


# -- options ----------------------------------------------------------------------------------

def test_options_defaults_and_refusals():
    plain = DissectOptions()
    assert plain.null_permutations > 0 and plain.bootstrap > 0
    best = DissectOptions(threshold="best-iou", second_pass="forward")
    assert best.null_permutations == 0 and best.bootstrap == 0
    with pytest.raises(NdcoreError, match="best-iou"):
        DissectOptions(threshold="best-iou", second_pass="forward", bootstrap=10)
    for bad in ({"bootstrap": 1}, {"null_permutations": -1}, {"fdr": 0.0}, {"fdr": 1.5},
                {"resample_seed": -2}):
        with pytest.raises(NdcoreError, match="--"):
            DissectOptions(**bad)
