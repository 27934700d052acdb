"""Engine paths that must agree: cached maps vs a second forward pass, given thresholds,
quantile on upsampled maps, workers, and re-labelling a saved run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from ndcore import load_result
from ndcore.api import run_dissection
from ndcore.engine import Dissection, DissectOptions
from ndcore.data.broden import BrodenDataset
from ndcore.models import ModelAdapter, Preprocess
from ndcore.ops import tally_reference, upsample_bilinear
from test_planted import CATS, LABELS, make_images
from broden_fixture import write_broden


def random_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(5, 4, 3, stride=2, padding=1), nn.ReLU())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_broden(tmp_path_factory.mktemp("eng"), CATS, LABELS, make_images(40, seed=5))


def adapter():
    return ModelAdapter("rand", random_cnn(), Preprocess())


def counts_of(result):
    return {name: lr.counts for name, lr in result.layers.items()}


def assert_same_counts(a, b):
    for layer in a:
        for key in ("intersection", "truth", "act_lite", "area_by_pattern"):
            np.testing.assert_array_equal(a[layer][key], b[layer][key], err_msg=f"{layer} {key}")


@pytest.mark.parametrize("memory_mb", [0, 0.02, 1000])  # all on disk, spilling, all in memory
def test_cached_second_pass_equals_forward_second_pass(dataset, memory_mb):
    layers = ["1", "3", "5"]
    fwd = run_dissection(adapter(), layers, BrodenDataset(dataset), second_pass="forward", batch_size=6)
    run = Dissection(adapter(), layers, BrodenDataset(dataset),
                     DissectOptions(second_pass="cache", batch_size=6, cache_memory_mb=memory_mb),
                     quiet=True)
    cached = run.run()
    stats = cached.config["run"]["map_cache"]
    assert (stats["bytes_on_disk"] > 0) == (memory_mb < 1000)
    assert (stats["bytes_in_memory"] > 0) == (memory_mb > 0)
    assert_same_counts(counts_of(fwd), counts_of(cached))
    for layer in layers:
        np.testing.assert_array_equal(fwd[layer].thresholds, cached[layer].thresholds)


def test_engine_counts_equal_a_direct_reference_computation(dataset):
    """The whole engine against a brute-force computation with the reference op."""
    ds = BrodenDataset(dataset)
    model = adapter()
    result = run_dissection(model, ["3"], ds, batch_size=9, quantile=0.05)
    from ndcore.data.probe import stack_items

    batch = stack_items([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        acts = model.module[:4](model.preprocess(batch.images))
    values = acts.transpose(0, 1).reshape(acts.shape[1], -1).numpy()
    thr = np.quantile(values, 0.95, axis=1).astype(np.float32)
    np.testing.assert_allclose(result["3"].thresholds, thr, rtol=1e-6)
    inter, area, _ = tally_reference(acts, torch.from_numpy(result["3"].thresholds), batch.labels,
                                     torch.as_tensor(ds.vocabulary.primary), ds.vocabulary.num_labels,
                                     ds.vocabulary.num_categories)
    from ndcore.results import label_counts

    counts = label_counts(result["3"].counts, ds.vocabulary, ds.vocabulary)
    # pixel labels match directly; image-level labels (scene) add the whole mask of the image
    scene = [3, 4]
    pixel = [l for l in range(ds.vocabulary.num_labels) if l not in scene]
    np.testing.assert_array_equal(counts["intersection"][:, pixel], inter.numpy()[:, pixel])
    for l in scene:
        has = (batch.image_labels == l).any(1)
        np.testing.assert_array_equal(counts["intersection"][:, l], area[has].sum(0).numpy())
    assert result["3"].counts["area_by_pattern"].sum() == area.sum()


def test_given_thresholds_single_pass(dataset, tmp_path):
    ds = BrodenDataset(dataset)
    first = run_dissection(adapter(), ["3", "5"], ds, batch_size=8)
    np.save(tmp_path / "t3.npy", first["3"].thresholds)
    np.save(tmp_path / "t5.npy", first["5"].thresholds)
    again = run_dissection(adapter(), ["3", "5"], ds, batch_size=5,
                           thresholds={"3": str(tmp_path / "t3.npy"), "5": str(tmp_path / "t5.npy")})
    assert_same_counts(counts_of(first), counts_of(again))


def test_wrong_threshold_count_names_layer(dataset, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros(3, np.float32))
    from ndcore.errors import NdcoreError

    with pytest.raises(NdcoreError, match="layer '3' has 5 units but its thresholds have 3"):
        run_dissection(adapter(), ["3"], BrodenDataset(dataset), thresholds={"3": str(tmp_path / "bad.npy")})


def test_quantile_on_upsampled_maps(dataset):
    ds = BrodenDataset(dataset)
    model = adapter()
    result = run_dissection(model, ["3"], ds, quantile_on="upsampled", quantile=0.02, batch_size=7)
    from ndcore.data.probe import stack_items

    batch = stack_items([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        acts = model.module[:4](model.preprocess(batch.images))
    up = upsample_bilinear(acts, batch.label_size)
    values = up.transpose(0, 1).reshape(up.shape[1], -1).numpy()
    np.testing.assert_allclose(result["3"].thresholds, np.quantile(values, 0.98, axis=1), rtol=1e-6)


def test_workers_give_same_result(dataset):
    a = run_dissection(adapter(), ["3"], BrodenDataset(dataset), workers=0, batch_size=4)
    b = run_dissection(adapter(), ["3"], BrodenDataset(dataset), workers=2, batch_size=4)
    assert_same_counts(counts_of(a), counts_of(b))


def test_saved_run_relabels_without_model(dataset, tmp_path):
    out = tmp_path / "run"
    res = run_dissection(adapter(), ["3", "5"], BrodenDataset(dataset), out, quantile=0.05)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["complete"] and cfg["layers"] == ["3", "5"]
    assert (out / "3" / "thresholds.npy").is_file() and (out / "5" / "tally.csv").is_file()
    loaded = load_result(out)
    assert [u.iou for u in loaded["3"].units] == [u.iou for u in res["3"].units]
    strict = load_result(out, cutoff=0.99)
    assert strict["3"].summary()["detectors"] == 0
    only_scene = load_result(out, categories=["scene"])
    assert {u.category for u in only_scene["3"].units} == {"scene"}


def test_tally_csv_layout(dataset, tmp_path):
    import csv

    out = tmp_path / "run"
    run_dissection(adapter(), ["5"], BrodenDataset(dataset), out)
    rows = list(csv.DictReader(open(out / "5" / "tally.csv")))
    header = list(rows[0].keys())
    assert header[:4] == ["unit", "category", "label", "score"]
    assert header[4:9] == ["object-label", "object-truth", "object-activation", "object-intersect",
                           "object-iou"]
    assert header[9:] == ["scene-label", "scene-truth", "scene-activation", "scene-intersect", "scene-iou"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert sorted(int(r["unit"]) for r in rows) == [1, 2, 3, 4]  # 1-based


class Interrupting(nn.Module):
    """Raises KeyboardInterrupt on the n-th forward call (a user pressing Ctrl-C)."""

    def __init__(self, inner, after):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.inner(x)


def test_interrupted_run_is_marked_incomplete_and_can_be_rerun(dataset, tmp_path):
    from ndcore.errors import OutputError

    out = tmp_path / "run"
    model = ModelAdapter("rand", Interrupting(random_cnn(), after=3), Preprocess())
    with pytest.raises(KeyboardInterrupt):
        run_dissection(model, ["inner.3"], BrodenDataset(dataset), out, batch_size=8)
    assert json.loads((out / "config.json").read_text())["complete"] is False
    with pytest.raises(OutputError, match="did not finish"):
        load_result(out)
    model.module.after = -1
    run_dissection(model, ["inner.3"], BrodenDataset(dataset), out, batch_size=8)
    assert load_result(out)["inner.3"].num_units == 5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("second_pass", ["cache", "forward"])
def test_cuda_run_equals_cpu_run(dataset, second_pass):
    layers = ["1", "3", "5"]
    cpu = run_dissection(adapter(), layers, BrodenDataset(dataset), batch_size=6)
    gpu = run_dissection(adapter(), layers, BrodenDataset(dataset), batch_size=6, device="cuda",
                         second_pass=second_pass)
    for layer in layers:  # convolutions may round differently on the GPU: compare loosely
        np.testing.assert_allclose(cpu[layer].thresholds, gpu[layer].thresholds, rtol=1e-4, atol=1e-5)
        a, b = cpu[layer].counts, gpu[layer].counts
        assert abs(int(a["intersection"].sum()) - int(b["intersection"].sum())) <= \
            0.01 * max(1, int(a["intersection"].sum()))
        assert [u.label for u in cpu[layer].units] == [u.label for u in gpu[layer].units]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_given_thresholds_exact(dataset, tmp_path):
    """With the same thresholds and the same maps, the GPU counts equal the CPU counts exactly."""
    from ndcore.data.probe import stack_items
    from ndcore.ops import tally

    ds = BrodenDataset(dataset)
    batch = stack_items([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        acts = random_cnn()[:4](Preprocess()(batch.images))
    thr = torch.quantile(acts.transpose(0, 1).reshape(acts.shape[1], -1), 0.9, dim=1)
    cat = torch.as_tensor(ds.vocabulary.primary)
    args = (ds.vocabulary.num_labels, ds.vocabulary.num_categories)
    on_cpu = tally(acts, thr, batch.labels, cat, *args)
    on_gpu = tally(acts.cuda(), thr.cuda(), batch.labels.cuda(), cat.cuda(), *args)
    for x, y in zip(on_cpu, on_gpu):
        torch.testing.assert_close(x, y.cpu(), rtol=0, atol=0)


def test_kept_maps_with_a_wrong_speculative_floor_fall_back_exactly(tmp_path):
    """The first batch is far brighter than the rest: the floor guessed from it (its top 1%)
    lies above the final top-0.5% threshold, so pass 2 must run the model for that batch."""
    from broden_fixture import write_broden
    from test_planted import CATS, LABELS

    rng = np.random.default_rng(0)
    images = []
    for i in range(40):
        level = 250 if i < 4 else 40
        img = np.clip(rng.normal(level, 3, size=(8, 8, 3)), 0, 255).astype(np.uint8)
        images.append({"image": img, "planes": {"object": [rng.integers(0, 3, size=(8, 8))]}})
    data = write_broden(tmp_path / "d", CATS, LABELS, images)
    conv = nn.Conv2d(3, 2, 1)
    torch.nn.init.constant_(conv.weight, 1.0 / 3)
    torch.nn.init.zeros_(conv.bias)
    model = lambda: ModelAdapter("bright", nn.Sequential(conv), Preprocess((0,) * 3, (255,) * 3))
    fwd = run_dissection(model(), ["0"], BrodenDataset(data), second_pass="forward",
                         batch_size=4, quantile=0.01)
    cached = run_dissection(model(), ["0"], BrodenDataset(data), second_pass="cache",
                            batch_size=4, quantile=0.01)
    assert cached.config["run"]["map_cache"]["batches_recomputed"] >= 1  # premise
    assert_same_counts(counts_of(fwd), counts_of(cached))
