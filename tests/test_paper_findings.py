"""The paper-findings study (examples/paper-findings): its reduced run produces every training
run, every series complete with the expected members, the page, its figures and its numbers;
a rerun reuses all of it. The findings themselves are the full study's (docs/paper-findings.md),
not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from ndcore.results import DissectionResult
from ndcore.results.series import read_series

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "examples" / "paper-findings"
sys.path.insert(0, str(STUDY))

import findings  # noqa: E402
import nets  # noqa: E402
import train  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
# The reduced study's comparisons (study.REDUCED): 2-3 members each.
EXPECTED = {
    "supervision": ["supervised", "self-supervised", "random-init"],
    "iterations": ["iter_000000", "iter_000002", "iter_000006"],
    "conditions": ["bn-width1", "nobn-width1", "bn-width2"],
    "architectures": ["alexnet", "vgg"],
    "rotation": ["supervised"],
}
FIGURES = ["layer-trend.svg", "supervision.svg", "iterations.svg", "batchnorm-width.svg",
           "architectures.svg", "rotation.svg"]


def run_study(out: Path, doc: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STUDY / "study.py"), "--out", str(out),
                           "--reduced", "--quiet", "--doc", str(doc)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper")
    out, doc = base / "out", base / "docs" / "paper-findings.md"
    proc = run_study(out, doc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, doc


def unique_by_definition(run: Path, layer: str) -> int:
    """Distinct best labels among the units whose best IoU exceeds the cut-off."""
    lr = DissectionResult.load(run)[layer]
    return len({u.label for u in lr.units if u.iou > lr.cutoff})


@pytest.mark.slow
def test_every_series_complete_with_its_members(study):
    out, _ = study
    for name, members in EXPECTED.items():
        series = read_series(out / "series" / name)
        assert series.complete, name
        assert [m.name for m in series.members] == members
        assert all(m.complete for m in series.members)
        for member, run in zip(series.members, series.run_dirs()):
            result = DissectionResult.load(run)  # refuses an incomplete run
            wanted = LAYERS + (["conv5@rot0", "conv5@rot1"] if name == "rotation" else [])
            assert sorted(result.layers) == sorted(wanted), (name, member.name)
    # checkpoints are placed on the x-axis by the iteration in their names
    assert read_series(out / "series" / "iterations").xs() == [0, 2, 6]


@pytest.mark.slow
def test_training_runs_are_seeded_and_complete(study):
    out, _ = study
    runs = sorted((out / "models").iterdir())
    nets_trained = {r.name.rsplit("-", 1)[0] for r in runs}
    assert nets_trained == {"vgg_small", "vgg_small_rotation", "vgg_small_nobn",
                            "vgg_small_w2", "alexnet_small"}
    for run in runs:
        record = json.loads((run / "train.json").read_text())
        for name in record["checkpoints"]:
            assert (run / name).is_file()
    # iteration 0 is the initialisation drawn under the run's seed (0)
    base = next(r for r in runs if r.name.startswith("vgg_small-"))
    torch.manual_seed(0)
    fresh = nets.build_net("vgg_small").state_dict()
    saved = torch.load(base / "iter_000000.pt", weights_only=True)
    assert saved.keys() == fresh.keys()
    assert all(torch.equal(saved[k], fresh[k]) for k in fresh)
    assert not torch.equal(torch.load(base / "iter_000006.pt", weights_only=True)[
        "conv1.0.weight"], fresh["conv1.0.weight"])


@pytest.mark.slow
def test_numbers_match_the_runs(study):
    out, doc = study
    results = json.loads((out / "findings.json").read_text())
    f = results["findings"]
    series = out / "series"
    sup = f["supervision"]["unique_conv5"]
    for member in EXPECTED["supervision"]:
        assert sup[member] == unique_by_definition(series / "supervision" / member, "conv5")
    its = f["iterations"]
    assert its["iterations"] == [0, 2, 6]
    assert its["unique_conv5"] == [unique_by_definition(series / "iterations" / m, "conv5")
                                   for m in EXPECTED["iterations"]]
    rot = f["rotation"]
    assert rot["alpha"] == [0.0, 1.0]
    assert rot["unique"] == [unique_by_definition(series / "rotation" / "supervised",
                                                  f"conv5@rot{a}") for a in ("0", "1")]
    # the same weights in two series give the same dissection
    assert (unique_by_definition(series / "supervision" / "supervised", "conv5")
            == unique_by_definition(series / "iterations" / "iter_000006", "conv5")
            == unique_by_definition(series / "architectures" / "vgg", "conv5"))
    # significance was computed where it was asked for (the rotation run) only
    sig = f["significance"]["conv5"]
    assert sig["detectors_fdr"] is not None and sig["stable_labels"] is not None
    assert "detectors_fdr" not in DissectionResult.load(
        series / "supervision" / "supervised")["conv5"].summary()
    assert json.loads((doc.parent / "paper-findings" / "findings.json").read_text()) == results


@pytest.mark.slow
def test_page_and_figures_written(study):
    _, doc = study
    text = doc.read_text()
    assert "Reduced run" in text
    for heading in ("## 1. ", "## 2. ", "## 3. ", "## 4. ", "## 5. ", "## 6. "):
        assert heading in text
    assert text.count("**Reproduced here: ") == 7  # findings 1-6, 4 in two parts
    for name in FIGURES:
        path = doc.parent / "paper-findings" / name
        assert f"](paper-findings/{name})" in text
        root = ET.fromstring(path.read_text())
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert len(list(root.iter())) > 20  # bars or lines drawn, not an empty frame


@pytest.mark.slow
def test_rerun_reuses_everything(study):
    out, doc = study
    proc = run_study(out, doc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "findings.json").read_text())
    assert all(s["reused"] for s in results["series"].values())
    assert "] training " not in proc.stdout  # no network trained again


def test_training_is_reproducible(tmp_path):
    """Two trainings with the same settings save the same weights at every checkpoint, and
    leave the caller's torch settings as they were."""
    settings = train.TrainSettings("vgg_small", iterations=3, batch_size=8, train_images=16,
                                   val_images=8, checkpoints=(1,))
    data = train.DataCache()
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    a = train.train(settings, tmp_path / "a", data, log=lambda m: None)
    b = train.train(settings, tmp_path / "b", data, log=lambda m: None)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    states = {}
    for name in ("iter_000000.pt", "iter_000001.pt", "iter_000003.pt"):
        sa = torch.load(a / name, weights_only=True)
        sb = torch.load(b / name, weights_only=True)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        states[name] = sa
    key = "conv5.0.weight"
    assert not torch.equal(states["iter_000001.pt"][key], states["iter_000003.pt"][key])


# -- the verdict rules, on hand-made summaries --------------------------------------------


def layer(unique_by_category: dict, detectors: int = 0, units: int = 8) -> dict:
    cats = {c: {"detectors": n, "unique": n} for c, n in unique_by_category.items()}
    return {"units": units, "detectors": detectors or sum(unique_by_category.values()),
            "unique_detectors": sum(unique_by_category.values()), "categories": cats}


def test_layer_trend_rule():
    early = layer({"color": 3, "texture": 1, "object": 0, "part": 0, "scene": 0})
    late = layer({"color": 1, "texture": 0, "object": 2, "part": 1, "scene": 4})
    trend = {"conv1": early, "conv2": early, "conv3": late, "conv4": late, "conv5": late}
    got = findings.layer_trend(trend)
    assert got["color_texture_low"] == 1.0 and got["object_part_high"] == round(3 / 8, 3)
    assert got["verdict"] == "yes"
    flat = {name: late for name in trend}
    assert findings.layer_trend(flat)["verdict"] == "no"  # equal shares: no direction


def test_spearman_and_iterations_rule():
    assert findings.spearman([0, 1, 2, 3], [1, 5, 7, 9]) == pytest.approx(1.0)
    assert findings.spearman([0, 1, 2, 3], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 0..3, y ranks 0, 1.5, 1.5, 3 -> 0.9487 by hand
    assert findings.spearman([0, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.9486833, abs=1e-6)
    assert findings.iterations([(0, 3), (10, 5), (30, 4), (100, 9)])["verdict"] == "yes"
    assert findings.iterations([(0, 3), (10, 1), (30, 1), (100, 4)])["verdict"] == "partly"
    assert findings.iterations([(0, 5), (10, 4), (100, 3)])["verdict"] == "no"


def test_rotation_and_architecture_rules():
    rot = {"conv5": layer({"object": 5}), "conv5@rot0": layer({"object": 4, "scene": 1}),
           "conv5@rot0.5": layer({"object": 3}), "conv5@rot1": layer({"object": 1})}
    got = findings.rotation(rot)
    assert got["alpha"] == [0.0, 0.5, 1.0] and got["unique"] == [5, 3, 1]
    assert got["unique_drop"] == 0.8 and got["verdict"] == "yes"
    members = {"resnet": {"conv5": layer({"scene": 5})}, "vgg": {"conv5": layer({"scene": 6})},
               "alexnet": {"conv5": layer({"scene": 2})}}
    arch = findings.architectures(members, ["resnet", "vgg", "alexnet"])
    assert (arch["pairs_in_paper_order"], arch["pairs"], arch["verdict"]) == (2, 3, "partly")
