"""``ndcore formulas``'s plumbing: a finished run -> the dissection's own unit masks and the
probe set's label masks -> the search -> ``<layer>/formulas.json`` -> the report.

The oracle is written here from the definition (docs/method.md sections 3-4 and
"Compositional explanations"): the model run by hand on the images written by hand,
``F.interpolate(bilinear, align_corners=False)`` to the label size, ``> T_u``; label masks
straight from the arrays written into the dataset (image-level labels cover the image); IoU
over all pixels of all images.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from broden_fixture import write_broden
from test_report import ensure_python_plugin
from ndcore.api import run_dissection
from ndcore.cli import main
from ndcore.data.broden import BrodenDataset
from ndcore.errors import LayerError, NdcoreError, OutputError
from ndcore.formulas.output import formulas_path, read_formulas
from ndcore.formulas.run_masks import iter_masks, masks_of, open_run
from ndcore.results import DissectionResult

CATS = ["object", "part", "scene"]
# "edge" is an object and a part; "spot" only a part, and parts are annotated on half the
# images: so the dissection's (paper) IoU of spot is not the all-images IoU
LABELS = [(1, "disc", {"object": 1.0}), (2, "edge", {"object": 0.3, "part": 0.5}),
          (3, "spot", {"part": 1.0}), (4, "field", {"scene": 1.0}), (5, "sky", {"scene": 1.0})]
N_IMAGES, SIZE, LABEL_SIZE = 40, 16, 8
MODEL = '''
import torch
from torch import nn

def build():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 5, 3, stride=2, padding=1))
'''
# layer "1": 8x8 maps (the label size), layer "2": 4x4 maps, upsampled x2
LAYERS = {"1": 2, "2": 3}  # layer name -> how many Sequential children produce it


def make_images(seed: int = 0):
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(N_IMAGES):
        square = (LABEL_SIZE,) * 2
        obj = np.where(rng.random(square) < 0.4, rng.choice([1, 2], square), 0)
        img = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
        img[..., 0] = np.kron(obj, np.ones((2, 2), int)) * 100 + rng.integers(0, 50, (SIZE, SIZE))
        spec = {"image": img, "planes": {"object": [obj]}, "label_size": (LABEL_SIZE,) * 2,
                "image_labels": {"scene": [int(rng.choice([4, 5]))]}}
        if i % 2 == 0:
            spec["planes"]["part"] = [np.where(rng.random((LABEL_SIZE,) * 2) < 0.4,
                                               rng.choice([2, 3], (LABEL_SIZE,) * 2), 0)]
        specs.append(spec)
    return specs


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("formulas")
    ensure_python_plugin()
    model = base / "model.py"
    model.write_text(MODEL)
    specs = make_images()
    data = write_broden(base / "data", CATS, LABELS, specs)
    out = base / "run"
    run_dissection(f"python:{model}:build", list(LAYERS), BrodenDataset(data), out,
                   normalize="none", quantile=0.1, batch_size=8)
    return {"run": out, "model": model, "specs": specs}


# -- the oracle ----------------------------------------------------------------------------------

def oracle_unit_masks(demo, layer: str) -> np.ndarray:
    """bool [N, U, sh, sw]: the model by hand, F.interpolate, strict threshold."""
    spec = importlib.util.spec_from_file_location("formulas_model", demo["model"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.build().eval()
    x = torch.from_numpy(np.stack([s["image"] for s in demo["specs"]])).permute(0, 3, 1, 2)
    with torch.no_grad():
        maps = net[:LAYERS[layer]](x.float() / 255)  # normalize "none": scaled to [0, 1]
    up = F.interpolate(maps, size=(LABEL_SIZE,) * 2, mode="bilinear", align_corners=False)
    thresholds = np.load(demo["run"] / layer / "thresholds.npy")
    return (up > torch.from_numpy(thresholds).view(1, -1, 1, 1)).numpy()


def oracle_label_masks(specs, categories=CATS) -> np.ndarray:
    """bool [N, L, sh, sw] (L = 6 label numbers, 0 unused): any plane of a category in
    ``categories`` holds l, or l is an image-level label of such a category (the whole image)."""
    out = np.zeros((len(specs), len(LABELS) + 1, LABEL_SIZE, LABEL_SIZE), dtype=bool)
    for n, s in enumerate(specs):
        for cat, planes in s["planes"].items():
            for plane in planes:
                if cat in categories:
                    for l in range(1, len(LABELS) + 1):
                        out[n, l] |= plane == l
        for cat, labels in s["image_labels"].items():
            for l in labels:
                if cat in categories:
                    out[n, l] = True
    return out


def iou_all_images(units: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[U, L]: sum |M & L| / sum |M | L| over every pixel of every image (0 when empty)."""
    inter = np.einsum("nuhw,nlhw->ul", units.astype(np.int64), labels.astype(np.int64))
    union = units.sum((0, 2, 3))[:, None] + labels.sum((0, 2, 3))[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def label_masks_of(items) -> np.ndarray:
    """The label masks the plumbing handed over, in the oracle's layout."""
    out = np.zeros((len(items), len(LABELS) + 1, LABEL_SIZE, LABEL_SIZE), dtype=bool)
    for n, item in enumerate(items):
        for l in range(1, len(LABELS) + 1):
            out[n, l] = (item.planes == l).any(0) | (l in item.image_labels)
    return out


# -- masks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", list(LAYERS))
def test_masks_are_the_dissections(demo, layer):
    run = open_run(demo["run"], layer)
    items = list(iter_masks(run, range(run.num_units)))
    assert [i.index for i in items] == list(range(N_IMAGES))  # every image, in probe order
    masks = np.stack([i.masks for i in items])
    want = oracle_unit_masks(demo, layer)
    assert 0 < want.mean() < 0.5  # premise: masks neither empty nor everything
    assert np.array_equal(masks, want)
    labels = label_masks_of(items)
    assert np.array_equal(labels, oracle_label_masks(demo["specs"]))
    ours, truth = iou_all_images(masks, labels), iou_all_images(want, oracle_label_masks(
        demo["specs"]))
    assert np.array_equal(ours.max(1), truth.max(1))  # each unit's best single-label IoU
    # where every image is annotated (object, scene: labels 1, 2, 4, 5), the dissection's own
    # IoU is the all-images one; spot (parts on half the images) is where they part
    iou = DissectionResult.load(demo["run"])[layer].iou
    for l in (1, 2, 4, 5):
        np.testing.assert_allclose(iou[:, l], truth[:, l], rtol=1e-12, atol=0)
    assert not np.allclose(iou[:, 3], truth[:, 3])


def test_masks_do_not_depend_on_batches_and_categories_restrict_labels(demo):
    run = open_run(demo["run"], "2")
    _, by_run = masks_of(run, [4, 0])
    _, by_five = masks_of(run, [4, 0], batch_size=5)
    assert np.array_equal(by_run, by_five)
    assert np.array_equal(by_run, oracle_unit_masks(demo, "2")[:, [4, 0]])
    items = list(iter_masks(run, [0], ["part"]))
    want = oracle_label_masks(demo["specs"], ["part"])
    assert want[:, 2].sum() < oracle_label_masks(demo["specs"])[:, 2].sum()  # premise
    assert np.array_equal(label_masks_of(items), want)


def test_a_run_of_the_first_images_gives_their_masks(demo, tmp_path):
    """--max-images (and the run's other settings) are the run's, not the source's size."""
    out = tmp_path / "first"
    data = demo["run"].parent / "data"
    run_dissection(f"python:{demo['model']}:build", ["2"], BrodenDataset(data), out,
                   normalize="none", quantile=0.1, batch_size=8, max_images=20,
                   null_permutations=0, bootstrap=0)
    run = open_run(out, "2")
    indices, masks = masks_of(run, range(run.num_units))
    assert list(indices) == list(range(20))
    oracle = oracle_unit_masks(dict(demo, run=out), "2")[:20]
    assert np.array_equal(masks, oracle)


def test_skipping_maps_that_cannot_cross_loses_no_pixel():
    """Maps whose maximum is at (or just under) the threshold: float32 bilinear mixing can
    exceed its inputs, so skipping every map with max <= T would lose pixels."""
    from ndcore.ops import upsample_bilinear
    from ndcore.ops.reference import unit_masks

    gen = torch.Generator().manual_seed(0)
    t = torch.rand(64, generator=gen) * 10 - 2
    t[:4] = torch.tensor([0.0, -0.0, 1e-42, -3.5])
    flat = t.view(1, -1, 1, 1).expand(6, -1, 3, 5).clone()  # constant maps at T
    flat[1] = torch.nextafter(flat[1], torch.tensor(-float("inf")))  # one ulp below T
    noisy = flat - torch.rand(flat.shape, generator=gen) * 0.01 * (torch.arange(6) % 3 == 2
                                                                  ).view(-1, 1, 1, 1)
    for maps in (flat, noisy):
        want = upsample_bilinear(maps, (7, 11)) > t.view(1, -1, 1, 1)
        for crossing_only in (True, False):
            got = unit_masks(maps, t, (7, 11), crossing_only=crossing_only)
            assert np.array_equal(got.numpy(), want.numpy())
    assert (upsample_bilinear(flat, (7, 11)) > t.view(1, -1, 1, 1)).any()  # premise
    assert not (flat.amax(dim=(2, 3)) > t).any()  # premise: no map's max is above T


def test_a_finished_run_keeps_no_maps(demo):
    """Why the masks come from running the model again: pass 1's kept maps go with the
    checkpoint (or a scratch folder) when the run completes."""
    config = json.loads((demo["run"] / "config.json").read_text())
    assert config["complete"] and config["run"]["second_pass"] == "cache"  # it kept maps
    assert config["run"]["map_cache"]["maps_kept"] > 0
    assert not (demo["run"] / "checkpoint").exists()
    assert not [p for p in demo["run"].rglob("*.bin")]  # the map store's files


# -- the command -----------------------------------------------------------------------------------

def run_cli(capsys, *args):
    code = main(["formulas", *map(str, args), "--workers", "0", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_length_one_formulas_are_the_best_single_labels(demo, capsys):
    code, out = run_cli(capsys, demo["run"], "--layer", "2", "--length", "1")
    assert code == 0, out
    data = read_formulas(demo["run"], "2")
    truth = iou_all_images(oracle_unit_masks(demo, "2"), oracle_label_masks(demo["specs"]))
    names = [name for _, name, _ in LABELS]
    assert [u["unit"] for u in data["units"]] == list(range(5))
    for row in data["units"]:
        assert set(row) == {"unit", "formula", "iou", "length", "optimal", "visited"}
        assert row["iou"] == pytest.approx(truth[row["unit"]].max(), abs=1e-12)
        assert row["formula"] in names and row["length"] == 1 and row["optimal"]
        assert truth[row["unit"], names.index(row["formula"]) + 1] == pytest.approx(row["iou"])
    # and the run's own saved counts, relabelled with every image counting, agree
    plain = DissectionResult.load(demo["run"], union="plain")["2"]
    for row in data["units"]:
        assert row["iou"] == pytest.approx(plain.units[row["unit"]].iou, abs=1e-12)
        assert f"{plain.units[row['unit']].iou:.4f}" in out  # printed beside the formula
    header = data["header"]
    assert header["length"] == 1 and header["search"] == "optimal" and header["images"] == 40
    assert header["categories"] == CATS and header["labels"] == 5 and header["units"] == 5
    assert "formulas.json" in out and data["units"][0]["formula"] in out
    assert not list(formulas_path(demo["run"], "2").parent.glob("*.tmp"))


def test_units_and_categories(demo, capsys):
    # parts: "edge" counts only where a part plane carries it (method.md section 6)
    code, out = run_cli(capsys, demo["run"], "--layer", "1", "--length", "1", "--units", "3,1",
                        "--categories", "part")
    assert code == 0, out
    truth = iou_all_images(oracle_unit_masks(demo, "1"),
                           oracle_label_masks(demo["specs"], ["part"]))
    rows = read_formulas(demo["run"], "1")["units"]
    assert [r["unit"] for r in rows] == [1, 3]  # the layer's unit numbers, not the search's
    assert "edge" in [r["formula"] for r in rows]  # premise: the restriction matters
    for r in rows:
        best = truth[r["unit"], 2:4].max()
        assert r["iou"] == pytest.approx(best, abs=1e-12)
        assert r["formula"] in (("edge", "spot") if best > 0 else ("",))  # "": no overlap
    # other units with the same settings join the file; other settings replace it
    assert run_cli(capsys, demo["run"], "--layer", "1", "--length", "1", "--units", "0",
                   "--categories", "part")[0] == 0
    assert [r["unit"] for r in read_formulas(demo["run"], "1")["units"]] == [0, 1, 3]
    assert run_cli(capsys, demo["run"], "--layer", "1", "--length", "2", "--units", "2")[0] == 0
    assert [r["unit"] for r in read_formulas(demo["run"], "1")["units"]] == [2]


def test_longer_formulas_are_at_least_as_good_and_beam_never_better(demo, capsys):
    assert run_cli(capsys, demo["run"], "--layer", "2", "--length", "1")[0] == 0
    single = {r["unit"]: r["iou"] for r in read_formulas(demo["run"], "2")["units"]}
    assert run_cli(capsys, demo["run"], "--layer", "2", "--search", "beam", "--beam", "2")[0] == 0
    beam = {r["unit"]: r for r in read_formulas(demo["run"], "2")["units"]}
    code, out = run_cli(capsys, demo["run"], "--layer", "2")
    assert code == 0, out
    best = {r["unit"]: r for r in read_formulas(demo["run"], "2")["units"]}
    assert read_formulas(demo["run"], "2")["header"]["search"] == "optimal"
    for u, row in best.items():
        assert row["optimal"] and 1 <= row["length"] <= 3
        assert row["iou"] >= single[u] - 1e-12
        assert beam[u]["iou"] <= row["iou"] + 1e-12


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "no layer 'nope'"),
    (["--layer", "2", "--units", "5"], "unit 5: layer '2' has units 0-4"),
    (["--layer", "2", "--units", "x"], "--units 'x'"),
    (["--layer", "2", "--categories", "texture"], "no category 'texture'"),
    (["--layer", "2", "--length", "0"], "--length 0"),
    (["--layer", "2", "--beam", "0"], "--beam 0"),
])
def test_bad_input_is_one_line(demo, capsys, args, message):
    code, out = run_cli(capsys, demo["run"], *args)
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out


def test_unfinished_or_missing_run_is_one_line(demo, capsys, tmp_path):
    config = json.loads((demo["run"] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, complete=False)))
    code, out = run_cli(capsys, tmp_path, "--layer", "2")
    assert code == 2 and "did not finish" in out and len(out.strip().splitlines()) == 1, out
    code, out = run_cli(capsys, tmp_path / "none", "--layer", "2")
    assert code == 2 and "not an ndcore run directory" in out, out
    moved = tmp_path / "moved"  # a run whose probe images are gone
    shutil.copytree(demo["run"], moved, ignore=shutil.ignore_patterns("report", "*.json.tmp"))
    config = json.loads((moved / "config.json").read_text())
    config["dataset"]["spec"] = f"broden:{tmp_path / 'gone'}"
    (moved / "config.json").write_text(json.dumps(config))
    code, out = run_cli(capsys, moved, "--layer", "2")
    assert code == 2 and "keeps no maps" in out and "gone" in out, out
    assert len(out.strip().splitlines()) == 1, out
    with pytest.raises(LayerError, match="did you mean"):
        open_run(demo["run"], "22")
    with pytest.raises(NdcoreError, match="unit -1"):
        list(iter_masks(open_run(demo["run"], "2"), [-1]))


def test_report_shows_each_units_formula(demo, capsys):
    from ndcore.report import write_report

    assert run_cli(capsys, demo["run"], "--layer", "2", "--length", "2", "--units", "0,1")[0] == 0
    rows = read_formulas(demo["run"], "2")["units"]
    broken = formulas_path(demo["run"], "1")
    broken.write_text("{not json")
    with pytest.raises(OutputError, match="unreadable"):
        read_formulas(demo["run"], "1")
    index = write_report(demo["run"], progress=False)
    page = (index.parent / "2.html").read_text()
    for r in rows:
        card = page.split(f'id="unit-{r["unit"]}"')[1].split("</article>")[0]
        assert 'class="formula"' in card and f"{r['iou']:.3f}" in card
        assert r["formula"].replace("&", "&amp;") in card
    assert page.count('class="formula"') == len(rows)  # units without a formula show none
    assert 'class="formula"' not in (index.parent / "1.html").read_text()  # unreadable: left out
    broken.unlink()


def test_generator_runs_regenerate_their_samples(tmp_path):
    """A generator run's samples are a function of (seed, index): regenerated and segmented
    again, their masks give the dissection's own IoUs (every sample is labelled here)."""
    import ndcore

    out = tmp_path / "gan"
    planted = f"python:{Path(__file__).parent / 'planted_generator.py'}:build"
    result = ndcore.dissect_generator(planted, ["units"], "colors", out, samples=40, seed=1,
                                      quantile=0.05, batch_size=16)
    run = open_run(out, "units")
    items = list(iter_masks(run, range(run.num_units)))
    assert [i.index for i in items] == list(range(40))
    units = np.stack([i.masks for i in items])
    labels = np.stack([[(i.planes == l).any(0) for l in range(len(run.label_names))]
                       for i in items])
    iou = iou_all_images(units, labels)
    assert iou.max(1).min() > 0.3  # premise: each planted unit finds its colour
    np.testing.assert_allclose(iou[:, 1:], result["units"].iou[:, 1:], rtol=1e-12, atol=0)


def test_runs_of_images_labelled_by_a_segmenter(demo, capsys, tmp_path):
    # --dataset images:DIR --segmenter colors: the run records its segmenter, and `formulas`
    # rebuilds the same labelled source with it
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    for i, spec in enumerate(demo["specs"][:12]):
        Image.fromarray(spec["image"]).save(folder / f"{i:02d}.png")
    out = tmp_path / "run"
    run_dissection(f"python:{demo['model']}:build", ["2"], f"images:{folder}", out,
                   segmenter="colors", normalize="none", quantile=0.1, batch_size=4)
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["segmenter"] == "colors"
    code, text = run_cli(capsys, out, "--layer", "2", "--length", "1")
    assert code == 0, text
    plain = DissectionResult.load(out, union="plain")["2"]
    rows = read_formulas(out, "2")["units"]
    assert any(row["iou"] > 0 for row in rows)  # premise: colours meet the units
    for row in rows:
        assert row["iou"] == pytest.approx(plain.units[row["unit"]].iou, abs=1e-12)
