"""GAN dissection: a planted generator is labelled unit by unit, its units' ablation and
insertion have the planted effects, runs are reproducible, bad input gets one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ndcore
from ndcore.errors import NdcoreError
from ndcore.gan.latents import latents
from planted_generator import NAMES
from run_fixture import ndcore as run_ndcore

HERE = Path(__file__).parent
PLANTED = f"python:{HERE / 'planted_generator.py'}:build"


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    result = ndcore.dissect_generator(PLANTED, ["units"], "colors", out, samples=300, seed=1,
                                      quantile=0.05, batch_size=64)
    return out, result


def test_every_unit_gets_its_own_concept(planted_run):
    _, result = planted_run
    lr = result["units"]
    assert [u.label for u in lr.units] == NAMES
    assert all(u.iou > 0.3 for u in lr.units)


def test_best_iou_rule_finds_the_painting_threshold(tmp_path):
    result = ndcore.dissect_generator(PLANTED, ["units"], "colors", tmp_path / "b", samples=300,
                                      seed=1, threshold="best-iou", batch_size=100)
    lr = result["units"]
    assert [u.label for u in lr.units] == NAMES
    names = lr.vocabulary.label_names
    for k, name in enumerate(NAMES):
        # the generator paints where a map exceeds 0.3: the best threshold is near it
        assert abs(lr.best_thresholds[k, names.index(name)] - 0.3) < 0.05
        assert lr.iou[k, names.index(name)] > 0.6
    # the saved run relabels the same way, and keeps the curves
    again = ndcore.load_result(tmp_path / "b")["units"]
    np.testing.assert_array_equal(again.iou, lr.iou)
    assert "hist" in again.counts and again.counts["hist"].shape[2] == 256


def test_ablation_removes_its_concept_and_leaves_the_others(planted_run):
    out, _ = planted_run
    for k, name in enumerate(NAMES):
        effects = ndcore.intervene(out, "units", [k], ablate=True, samples=120, seed=7)
        c = effects["concepts"]
        assert c[name]["before"] > 0.04
        assert c[name]["after"] < 0.05 * c[name]["before"], name
        for other in NAMES:
            if other != name:  # others only gain what the ablated unit covered
                assert abs(c[other]["effect"]) < 0.25 * c[name]["before"], (name, other)


def test_insertion_adds_its_concept_inside_the_region_only(planted_run, tmp_path):
    out, _ = planted_run
    default = ndcore.intervene(out, "units", [2], insert=True, region=(0, 0, 16, 16),
                               samples=60, seed=3)  # at the unit's threshold
    assert default["concepts"]["blue"]["effect"] > 0.1
    # above every other unit's peak (1.0), the unit wins every cell of the region
    effects = ndcore.intervene(out, "units", [2], insert=2.0, region=(0, 0, 16, 16),
                               samples=60, seed=3, out=tmp_path / "ins")
    assert effects["concepts"]["blue"]["effect"] > 0.15
    after = effects["images"]["after"].float()
    before = effects["images"]["before"].float()
    blue = torch.tensor([40.0, 70.0, 205.0]).view(1, 3, 1, 1)
    is_blue = ((after - blue).abs().sum(1) < 1)
    assert is_blue[:, 2:14, 2:14].float().mean() > 0.95  # inside the region: blue
    # outside the region's cells (at the layer's 8x8 resolution, a margin of one cell), the
    # images are as before
    np.testing.assert_array_equal(after[:, :, 24:, :].numpy(), before[:, :, 24:, :].numpy())
    assert json.loads((tmp_path / "ins" / "effects.json").read_text())["edit"]["region"] == \
        [0, 0, 16, 16]
    assert (tmp_path / "ins" / "before.png").is_file() and (tmp_path / "ins" / "after.png").is_file()


def test_removal_curve(planted_run, tmp_path):
    out, _ = planted_run
    curve = ndcore.intervene(out, "units", concept="green", top=[1, 2], ablate=True,
                             samples=60, out=tmp_path / "curve")
    assert curve["points"][0]["units"] == [1]
    assert curve["points"][0]["remaining"] == 0.0
    assert (tmp_path / "curve" / "removal.svg").read_text().startswith("<svg")


def test_same_seed_same_results_whatever_the_batches(planted_run, tmp_path):
    out, result = planted_run
    again = ndcore.dissect_generator(PLANTED, ["units"], "colors", tmp_path / "again",
                                     samples=300, seed=1, quantile=0.05, batch_size=37)
    for key in ("intersection", "truth", "area_by_pattern"):
        np.testing.assert_array_equal(again["units"].counts[key], result["units"].counts[key])
    assert again["units"].thresholds.tobytes() == result["units"].thresholds.tobytes()
    other = ndcore.dissect_generator(PLANTED, ["units"], "colors", samples=300, seed=2,
                                     quantile=0.05)
    assert not np.array_equal(other["units"].counts["intersection"],
                              result["units"].counts["intersection"])


def test_latents_depend_on_seed_and_index_only():
    a = latents([5, 6, 7], (12, 1, 1), seed=3)
    b = latents([7], (12, 1, 1), seed=3)
    assert torch.equal(a[2], b[0])
    assert not torch.equal(latents([7], (12, 1, 1), seed=4)[0], b[0])


def test_context_manager_edits_and_restores():
    from ndcore.gan.editing.edits import Ablate

    gen = ndcore.api.resolve_model(PLANTED).module
    z = latents(range(8), (12, 1, 1), 0)
    plain = gen(z)
    with ndcore.edit(gen, {"units": Ablate([0, 1, 2, 3])}):
        blank = gen(z)
    assert torch.allclose(blank, torch.full_like(blank, 128 / 127.5 - 1), atol=1e-6)  # grey
    assert torch.equal(gen(z), plain)  # hooks removed


@pytest.mark.parametrize("args, message", [
    (["dissect", "--model", f"python:{HERE / 'planted_generator.py'}:build_no_latent",
      "--layers", "units", "--segmenter", "colors", "--out", "{out}"],
     "not a generator (no latent_shape)"),
    (["dissect", "--model", f"python:{HERE / 'planted_generator.py'}:build_not_an_image",
      "--layers", "units", "--segmenter", "colors", "--out", "{out}"],
     "the generator's output is (8, 4, 8, 8), not an RGB image batch"),
    (["dissect", "--model", PLANTED, "--layers", "units", "--segmenter", "colors",
      "--dataset", "synthetic", "--out", "{out}"], "give --dataset SPEC"),
    (["dissect", "--model", PLANTED, "--layers", "units", "--segmenter", "nosuch",
      "--out", "{out}"], "nosuch"),
    (["dissect", "--model", PLANTED, "--layers", "units", "--segmenter", "colors",
      "--workers", "4", "--out", "{out}"], "--workers applies to --dataset runs"),
])
def test_bad_generator_input_is_one_line(tmp_path, args, message):
    args = [a.replace("{out}", str(tmp_path / "o")) for a in args]
    done = run_ndcore([*args, "--samples", "8", "--batch-size", "8", "--quiet", "--no-report"])
    assert done.returncode == 2, done.stderr
    lines = [l for l in done.stdout.strip().splitlines() if l.strip()]
    assert lines[0].startswith("error:") and message in " ".join(lines), done.stdout


@pytest.mark.parametrize("args, message", [
    (["--units", "4", "--ablate"], "layer 'units' has units 0..3; unit 4 is out of range"),
    (["--units", "1", "--insert", "--region", "0,0,40,8"], "must lie inside the 32x32 image"),
    (["--units", "1"], "give exactly one of --ablate and --insert"),
    (["--concept", "purple-ish", "--ablate"], "not in the segmenter's vocabulary"),
])
def test_bad_intervention_is_one_line(planted_run, args, message):
    out, _ = planted_run
    done = run_ndcore(["intervene", str(out), "--layer", "units", "--samples", "4", *args])
    assert done.returncode == 2, done.stderr
    assert message in done.stdout.replace("\n", " "), done.stdout


def test_segmenter_labels_outside_its_vocabulary_are_refused(tmp_path):
    from ndcore.data.segmenters import ColorSegmenter

    class Broken(ColorSegmenter):
        def segment(self, images):
            seg = super().segment(images)
            seg.labels[3, 0, 0, 0] = 99
            return seg

    with pytest.raises(NdcoreError, match=r"label\(s\) \[99\] on sample 3 are not in its "
                                          r"vocabulary \(1..11\)"):
        ndcore.dissect_generator(PLANTED, ["units"], Broken(), tmp_path / "x", samples=8,
                                 batch_size=8)
    config = json.loads((tmp_path / "x" / "config.json").read_text())
    assert config["complete"] is False  # nothing half-written: the run is marked unfinished


def test_report_of_a_generator_run_has_curves_strips_and_interventions(tmp_path):
    from ndcore.report import write_report

    out = tmp_path / "run"
    ndcore.dissect_generator(PLANTED, ["units"], "colors", out, samples=120, seed=1,
                             threshold="best-iou", batch_size=60)
    ndcore.intervene(out, "units", [0], ablate=True, samples=20,
                     out=out / "interventions" / "ablate-red")
    ndcore.intervene(out, "units", concept="green", top=[1], ablate=True, samples=20,
                     out=out / "interventions" / "remove-green")
    index = write_report(out, progress=False)
    page = (index.parent / "units.html").read_text()
    for name in NAMES:  # an IoU-vs-threshold curve per unit, for its concept
        assert f"IoU with {name} against the threshold" in page
    assert len(list((index.parent / "units").glob("unit*.jpg"))) == 4  # strips of samples
    assert len(list((out / "thumbnails").glob("*.jpg"))) > 0  # kept in pass 1, not regenerated
    text = index.read_text()
    assert "Interventions" in text and "Removing green from units" in text
    assert "../interventions/ablate-red/before.png" in text
    assert "http://" not in text  # self-contained: no external reference


def test_best_iou_histograms_equal_a_direct_computation():
    """The run's IoU histograms against the reference op on every sample's maps at once."""
    from ndcore.capture import LayerCapture
    from ndcore.data.segmenters import ColorSegmenter
    from ndcore.ops import iou_histogram_reference

    result = ndcore.dissect_generator(PLANTED, ["units"], "colors", samples=90, seed=4,
                                      threshold="best-iou", batch_size=40)
    counts = result["units"].counts
    gen = ndcore.api.resolve_model(PLANTED).module
    z = latents(range(90), (12, 1, 1), 4)
    with torch.no_grad(), LayerCapture(gen, ["units"], stop_early=False) as cap:
        maps = cap(z)["units"]
        images = ((cap.output + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    labels = ColorSegmenter().segment(images).labels
    want = iou_histogram_reference(maps, torch.as_tensor(counts["hist_edges"]), labels, 12)
    assert np.array_equal(counts["hist"], want.numpy())
    # premise: the histograms reach below the units' top-quantile thresholds
    assert (counts["hist_edges"][:, 0] < result["units"].thresholds).all()


def test_generator_layers_follow_their_layout(tmp_path):
    """A generator's NHWC layer, declared with --layout, is dissected as its units (the same
    results as the NCHW layer it permutes), and the run records the layout for interventions."""
    spec = f"python:{HERE / 'planted_generator.py'}:build_channels_last"
    result = ndcore.dissect_generator(spec, ["units", "last"], "colors", tmp_path / "run",
                                      samples=120, seed=1, layouts={"last": "nhwc"},
                                      null_permutations=0, bootstrap=0)
    assert result["last"].num_units == result["units"].num_units == 4
    assert np.array_equal(result["last"].thresholds, result["units"].thresholds)
    assert np.array_equal(result["last"].counts["intersection"],
                          result["units"].counts["intersection"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["layouts"] == {"units": "nchw", "last": "nhwc"}
