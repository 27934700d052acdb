"""The synthetic dataset generator: determinism, exact Broden format, atomic writes, caching."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ndcore.data import synthetic
from ndcore.data.synthetic import (
    CATEGORIES,
    COLOR_NAMES,
    COLOR_PROTOTYPES,
    LABEL_ID,
    VOCAB,
    color_name_of_rgb,
    ensure_synthetic,
    generate,
    render_sample,
)
from ndcore.data.synthetic.canvas import _Grid
from ndcore.data.synthetic.sample import _nearest_rows
from ndcore.data.synthetic.scenes import _SCENE_DRAW
from ndcore.data.synthetic.surfaces import _texture_mask

SMALL = dict(size=24, seed=3, image_size=64, label_size=32)


def _rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _header(path: Path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def _plane(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path))
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    assert not rgb[..., 2].any(), "B channel must be 0"
    return rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1].astype(np.int64)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "ds", **SMALL)


@pytest.fixture(scope="module")
def tables(dataset):
    return {
        "index": _rows(dataset / "index.csv"),
        "category": _rows(dataset / "category.csv"),
        "label": _rows(dataset / "label.csv"),
        **{f"c_{c}": _rows(dataset / f"c_{c}.csv") for c in CATEGORIES},
    }


def _cells(cell: str):
    return [p for p in cell.split(";") if p] if cell else []


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_bytes(dataset, tmp_path):
    again = generate(tmp_path / "again", **SMALL)
    for name in ["index.csv", "label.csv", "category.csv"] + [f"c_{c}.csv" for c in CATEGORIES]:
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    files = sorted(p.relative_to(dataset) for p in (dataset / "images").rglob("*"))
    assert files == sorted(p.relative_to(again) for p in (again / "images").rglob("*"))
    for rel in files:
        if rel.suffix in (".png", ".jpg"):
            assert (again / rel).read_bytes() == (dataset / rel).read_bytes(), rel


def test_other_seed_other_data(dataset, tmp_path):
    other = generate(tmp_path / "other", **{**SMALL, "seed": 4})
    assert (other / "index.csv").read_bytes() != (dataset / "index.csv").read_bytes()


def test_render_sample_deterministic_and_shaped():
    a = render_sample(np.random.default_rng(7), 64, 32)
    b = render_sample(np.random.default_rng(7), 64, 32)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    for cat in ("object", "part", "material", "color"):
        assert a.planes[cat].ndim == 3 and a.planes[cat].shape[1:] == (32, 32)
        assert np.array_equal(a.planes[cat], b.planes[cat])
    assert len(a.image_labels["scene"]) == 1 and a.scene in synthetic.SCENES
    assert a.labels("object"), "every image has at least one object"


@pytest.mark.parametrize("size", [32, 112])
def test_every_scene_and_texture_draws(size):
    grid = _Grid.make(size)
    assert list(_SCENE_DRAW) == list(synthetic.SCENES)
    means = []
    for name, draw in _SCENE_DRAW.items():
        img = draw(grid, np.random.default_rng(5))
        assert img.shape == (size, size, 3) and np.isfinite(img).all(), name
        assert img.min() >= -10 and img.max() <= 275, name  # clipped to 0..255 later
        means.append(img.reshape(-1, 3).mean(0))
    # Backgrounds are distinct: no two scenes have nearly the same mean colour and layout.
    means = np.array(means)
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e3 * np.eye(len(means))
    assert dist.min() > 3
    for name in synthetic.TEXTURES:
        mask = _texture_mask(name, grid, np.random.default_rng(5))
        assert mask.shape == (size, size) and 0.1 < mask.mean() < 0.9, name


def test_scenes_are_rare_and_all_occur():
    """Image-level labels cover whole images, so a scene must be rare for a unit's top-0.5% mask
    to reach IoU 0.04 (about 0.005 / frequency at best): ~24 uniform scenes, each ~4%."""
    rng = np.random.default_rng(0)
    counts = {}
    for _ in range(480):
        scene = render_sample(rng, 32, 16).scene
        counts[scene] = counts.get(scene, 0) + 1
    assert len(synthetic.SCENES) >= 20 and set(counts) == set(synthetic.SCENES)
    assert max(counts.values()) / 480 < 0.1


def test_color_plane_names_the_rendered_pixels():
    s = render_sample(np.random.default_rng(11), 64, 32)
    rows = _nearest_rows(64, 32)
    names = color_name_of_rgb(s.image[np.ix_(rows, rows)])
    expected = np.array([LABEL_ID[n] for n in COLOR_NAMES])[names]
    assert np.array_equal(s.planes["color"][0], expected)


# ---------------------------------------------------------------------------------------------
# Format


def test_headers(dataset, tables):
    cats = [r["name"] for r in tables["category"]]
    assert cats == [c for c in CATEGORIES if c in cats] and len(cats) >= 5
    assert _header(dataset / "index.csv") == ["image", "split", "ih", "iw", "sh", "sw"] + cats
    assert _header(dataset / "category.csv") == ["name", "first", "last", "count", "frequency"]
    assert _header(dataset / "label.csv") == [
        "number", "name", "category", "frequency", "coverage", "syns"]
    for c in cats:
        assert _header(dataset / f"c_{c}.csv") == ["code", "number", "name", "frequency",
                                                   "coverage"]
    assert (dataset / "README.txt").read_text().strip()


def test_index_rows_and_images(dataset, tables):
    index = tables["index"]
    assert len(index) == SMALL["size"]
    assert {r["split"] for r in index} <= {"train", "val"}
    for r in index:
        assert (r["ih"], r["iw"], r["sh"], r["sw"]) == ("64", "64", "32", "32")
        assert r["image"].startswith("synthetic/") and r["image"].endswith(".jpg")
        with Image.open(dataset / "images" / r["image"]) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_labels_numbered_densely_and_all_occur(tables):
    numbers = [int(r["number"]) for r in tables["label"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert all(int(r["frequency"]) > 0 and float(r["coverage"]) > 0 for r in tables["label"])
    assert len({r["name"] for r in tables["label"]}) == len(numbers)


def test_category_table_matches_members(tables):
    for row in tables["category"]:
        members = [int(r["number"]) for r in tables[f"c_{row['name']}"]]
        assert [int(r["code"]) for r in tables[f"c_{row['name']}"]] == list(
            range(1, len(members) + 1))
        assert int(row["count"]) == len(members)
        assert (int(row["first"]), int(row["last"])) == (min(members), max(members))
        annotated = sum(1 for r in tables["index"] if r[row["name"]])
        assert int(row["frequency"]) == annotated


def test_png_planes_encoding_and_numbers(dataset, tables):
    label_numbers = {int(r["number"]) for r in tables["label"]}
    pixel_cats = [c for c in ("object", "part", "material", "color") if c in tables["index"][0]]
    per_cat_freq = {c: {} for c in pixel_cats}
    for r in tables["index"]:
        stem = r["image"][:-len(".jpg")]
        for cat in pixel_cats:
            paths = _cells(r[cat])
            if len(paths) == 1:
                assert paths == [f"{stem}_{cat}.png"]
            else:
                assert paths == [f"{stem}_{cat}_{k}.png" for k in range(1, len(paths) + 1)]
            planes = [_plane(dataset / "images" / p) for p in paths]
            present = set()
            for plane in planes:
                assert plane.shape == (32, 32)
                present |= set(np.unique(plane).tolist()) - {0}
            members = {int(x["number"]) for x in tables[f"c_{cat}"]}
            assert present <= members <= label_numbers
            for n in present:
                per_cat_freq[cat][n] = per_cat_freq[cat].get(n, 0) + 1
    for cat in pixel_cats:  # c_<cat>.csv frequencies are counted from the planes
        assert {int(x["number"]): int(x["frequency"]) for x in tables[f"c_{cat}"]} == \
            per_cat_freq[cat]


def test_color_on_every_pixel(dataset, tables):
    for r in tables["index"][:5]:
        (path,) = _cells(r["color"])
        assert (_plane(dataset / "images" / path) > 0).all()


def test_image_level_categories(tables):
    for cat in ("scene", "texture"):
        members = {int(x["number"]) for x in tables[f"c_{cat}"]}
        cells = [_cells(r[cat]) for r in tables["index"]]
        for cell in cells:
            assert all(v.isdigit() and int(v) in members for v in cell)
        if cat == "scene":
            assert all(len(c) == 1 for c in cells)
    scene_cov = {x["name"]: float(x["coverage"]) for x in tables["c_scene"]}
    scene_freq = {x["name"]: int(x["frequency"]) for x in tables["c_scene"]}
    assert scene_cov == {k: float(v) for k, v in scene_freq.items()}  # whole-image labels


def test_partial_annotation(tables):
    index = tables["index"]
    for cat in ("object", "scene", "color"):
        assert all(r[cat] for r in index), cat
    for cat in ("part", "material", "texture"):
        annotated = sum(1 for r in index if r[cat])
        assert 0 < annotated < len(index), cat


def test_several_planes_per_category(tables):
    assert any(len(_cells(r["object"])) >= 2 for r in tables["index"])
    assert any(len(_cells(r["part"])) == 2 for r in tables["index"])


def test_label_in_two_categories(tables):
    shared = [r for r in tables["label"] if ";" in r["category"]]
    assert shared, "at least one label must belong to two categories"
    for r in shared:
        counts = dict(entry[:-1].split("(") for entry in r["category"].split(";"))
        for cat, count in counts.items():
            row = next(x for x in tables[f"c_{cat}"] if x["name"] == r["name"])
            assert int(row["number"]) == int(r["number"]) and int(row["frequency"]) == int(count)
        # The primary category (largest coverage) of a shared shape is "object".
        cov = {cat: float(next(x for x in tables[f"c_{cat}"] if x["name"] == r["name"])["coverage"])
               for cat in counts}
        assert max(cov, key=cov.get) == "object"


# ---------------------------------------------------------------------------------------------
# Atomic writing and caching


def test_interrupted_generation_leaves_nothing(tmp_path):
    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "ds", progress=interrupt, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_existing_directories(dataset, tmp_path):
    stamp = dataset / synthetic.STAMP_NAME
    before = stamp.stat().st_mtime_ns
    assert generate(dataset, **SMALL) == dataset  # identical complete generation: reused
    assert stamp.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError):
        generate(dataset, **{**SMALL, "seed": 99})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate(foreign, size=2, image_size=32, label_size=16)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate(empty, size=2, image_size=32, label_size=16) / "index.csv").exists()


def test_progress_reports_every_image(tmp_path):
    calls = []
    generate(tmp_path / "ds", size=5, image_size=32, label_size=16,
             progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 5) for i in range(1, 6)]


def test_ensure_synthetic_caches(tmp_path, monkeypatch):
    params = dict(size=3, seed=1, image_size=32, label_size=16)
    path = ensure_synthetic(cache_dir=tmp_path, **params)
    assert (path / "index.csv").exists() and path.parent == tmp_path

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert ensure_synthetic(cache_dir=tmp_path, **params) == path
    monkeypatch.setenv("NDCORE_CACHE", str(tmp_path / "env"))
    assert synthetic.default_cache_dir() == tmp_path / "env" / "synthetic"


def test_ensure_synthetic_uses_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NDCORE_CACHE", str(tmp_path))
    path = ensure_synthetic(size=2, seed=0, image_size=32, label_size=16)
    assert path.is_relative_to(tmp_path / "synthetic") and (path / "label.csv").exists()


# ---------------------------------------------------------------------------------------------
# Colour names


def test_color_prototypes_name_themselves():
    for name, rgb in COLOR_PROTOTYPES.items():
        assert COLOR_NAMES[int(color_name_of_rgb(np.array(rgb, np.uint8)))] == name


@pytest.mark.parametrize("rgb,name", [
    ((0, 0, 0), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"),
    ((255, 0, 0), "red"), ((0, 255, 0), "green"), ((0, 0, 255), "blue"),
    ((0, 0, 128), "blue"), ((255, 255, 0), "yellow"), ((255, 165, 0), "orange"),
    ((139, 69, 19), "brown"), ((128, 0, 128), "purple"), ((255, 192, 203), "pink"),
])
def test_color_name_of_rgb(rgb, name):
    assert COLOR_NAMES[int(color_name_of_rgb(np.array(rgb, np.uint8)))] == name


def test_color_name_vectorised():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    names = color_name_of_rgb(rgb)
    assert names.shape == (2, 2)
    assert [COLOR_NAMES[i] for i in names.ravel()] == ["black", "white", "red", "blue"]


def test_vocabulary():
    assert VOCAB.count("triangle") == 1 and LABEL_ID["triangle"] == VOCAB.index("triangle") + 1
    assert len(COLOR_NAMES) == 11
