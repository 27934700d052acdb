"""Converters (index masks, COCO panoptic), merge and info of Broden-format probe sets.

Oracles are the SOURCE files built here with PIL: a converted set is read back with ndcore's
Broden reader and compared pixel by pixel, as label names, with what the source masks say;
info's numbers are counted here from the source masks.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

from broden_fixture import write_broden
from ndcore.cli import main
from ndcore.data.broden import BrodenDataset
from ndcore.data.decode import read_rgb
from ndcore.data.probesets.convert_coco import convert_coco_panoptic
from ndcore.data.probesets.convert_index_png import convert_index_png
from ndcore.data.probesets.info import probe_set_info
from ndcore.data.probesets.merge import merge_probe_sets
from ndcore.errors import DatasetError

# line 0 background; line 3 empty (no label); line 5 repeats "cat" (one label for two values)
LABELS_TXT = "background\ncat\ndog\n\nsky\ncat\ntree\n"
NAMES = ["", "cat", "dog", "", "sky", "cat", "tree"]
IGNORE = 255
# VOC's palette colours: a mask read as colours (or grey levels) gives other numbers
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128]


def _names(ds: BrodenDataset, plane: np.ndarray) -> np.ndarray:
    """A read-back plane's label numbers as names ('' = no label)."""
    names = np.array([""] + ds.vocabulary.label_names[1:], dtype=object)
    return names[plane]


def _source_names(mask: np.ndarray, names=NAMES, ignore=(IGNORE,)) -> np.ndarray:
    out = np.array(names, dtype=object)[np.clip(mask, 0, len(names) - 1)]
    out[np.isin(mask, ignore)] = ""
    return out


def _rows_by_key(ds: BrodenDataset) -> Dict[str, int]:
    """index.csv row of each image, by its path under images/<source>/ without extension."""
    return {Path(row["name"]).with_suffix("").as_posix().split("/", 1)[1]: i
            for i, row in enumerate(ds.rows)}


@pytest.fixture()
def index_source(tmp_path):
    """Images (PNG and JPEG, one in a sub-folder) with masks: palette, grey, one at half the
    image's resolution; values 0-6 and 255 (ignored)."""
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    specs = {"a": (12, 16, "P", 1), "b": (12, 16, "L", 1), "sub/c": (12, 16, "P", 2),
             "d": (10, 8, "L", 1)}
    truth = {}
    for key, (h, w, mode, down) in specs.items():
        for d in (images, masks):
            (d / key).parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        suffix = ".jpg" if key == "d" else ".png"
        Image.fromarray(image).save(images / f"{key}{suffix}")
        mask = rng.choice([0, 1, 2, 3, 4, 5, 6, IGNORE], size=(h // down, w // down))
        mask[0, 0] = 1  # every mask names something
        im = Image.new(mode, mask.shape[::-1])
        im.putdata(mask.ravel().tolist())
        if mode == "P":
            im.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
        im.save(masks / f"{key}.png")
        truth[key] = mask
    # premise: a palette mask's colours are not its indices
    with Image.open(masks / "a.png") as im:
        assert im.mode == "P"
        assert not np.array_equal(np.asarray(im.convert("L")), truth["a"])
    labels = tmp_path / "src" / "labels.txt"
    labels.write_text(LABELS_TXT)
    return images, masks, labels, truth


def _convert(index_source, out, **kw):
    images, masks, labels, _ = index_source
    return convert_index_png(images, masks, labels, out, ignore=[IGNORE], progress=False, **kw)


def _check_index_set(out: Path, index_source, category="object"):
    images, _, _, truth = index_source
    ds = BrodenDataset(out)
    assert ds.vocabulary.categories == [category]
    assert sorted(n for n in ds.vocabulary.label_names[1:] if n) == ["cat", "dog", "sky", "tree"]
    rows = _rows_by_key(ds)
    assert sorted(rows) == sorted(truth)
    for key, mask in truth.items():
        item = ds[rows[key]]
        assert item.error is None
        assert tuple(item.label_size) == mask.shape  # the mask's own resolution
        assert item.planes.shape[0] == 1 and list(item.plane_categories) == [0]
        assert item.annotated.tolist() == [True]
        np.testing.assert_array_equal(_names(ds, item.planes[0]), _source_names(mask))
        source = next(images.glob(f"{key}.*"))
        np.testing.assert_array_equal(item.image, read_rgb(source))
    return ds


def test_index_png_reads_back_pixel_by_pixel(tmp_path, index_source):
    report = _convert(index_source, tmp_path / "out")
    assert (report.written, report.resumed, report.skipped) == (4, 0, 0)
    ds = _check_index_set(tmp_path / "out", index_source)
    # values 1 and 5 both name "cat": one label
    assert ds.vocabulary.label_names.count("cat") == 1


def test_index_png_ignores_hidden_images(tmp_path, index_source):
    """Hidden files and folders (a notebook's .ipynb_checkpoints) are not images of the set,
    as for ``data segment``: without masks, they would stop the conversion."""
    images = index_source[0]
    (images / ".ipynb_checkpoints").mkdir()
    shutil.copy(images / "a.png", images / ".ipynb_checkpoints" / "a-checkpoint.png")
    shutil.copy(images / "a.png", images / "sub" / ".a.png")
    report = _convert(index_source, tmp_path / "out")
    assert (report.written, report.skipped) == (4, 0)
    _check_index_set(tmp_path / "out", index_source)


def test_index_png_16bit_masks_and_category(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(images / "x.png")
    mask = np.zeros((6, 6), np.uint16)
    mask[:3] = 299
    mask[3:, :2] = 256
    Image.fromarray(mask).save(masks / "x.png")
    with Image.open(masks / "x.png") as im:
        assert im.mode.startswith("I")  # premise: a 16-bit PNG
    names = [""] + [f"label{v}" for v in range(1, 300)]
    (tmp_path / "labels.txt").write_text("\n".join(["bg"] + names[1:]) + "\n")
    convert_index_png(images, masks, tmp_path / "labels.txt", tmp_path / "out",
                      category="stuff", progress=False)
    ds = BrodenDataset(tmp_path / "out")
    assert ds.vocabulary.categories == ["stuff"]
    np.testing.assert_array_equal(_names(ds, ds[0].planes[0]),
                                  _source_names(mask.astype(np.int64), names, ()))


def test_index_png_resumes_after_an_interruption(tmp_path, index_source, monkeypatch):
    from ndcore.data.probesets.writer import ProbeSetWriter

    real_add, calls = ProbeSetWriter.add, []

    def add(self, *a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(a[0])
        return real_add(self, *a, **k)

    monkeypatch.setattr(ProbeSetWriter, "add", add)
    with pytest.raises(KeyboardInterrupt):
        _convert(index_source, tmp_path / "out")
    monkeypatch.setattr(ProbeSetWriter, "add", real_add)
    report = _convert(index_source, tmp_path / "out")
    assert (report.written, report.resumed) == (2, 2)
    _check_index_set(tmp_path / "out", index_source)
    again = _convert(index_source, tmp_path / "out")
    assert (again.written, again.resumed) == (0, 4)


def test_index_png_cityscapes_suffixes(tmp_path):
    images, masks = tmp_path / "leftImg8bit" / "aachen", tmp_path / "gtFine" / "aachen"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(images / "a_0001_leftImg8bit.png")
    mask = np.array([[0, 1] * 4] * 4, np.uint8)
    Image.fromarray(mask).save(masks / "a_0001_gtFine_labelIds.png")
    (tmp_path / "labels.txt").write_text("unlabeled\nroad\n")
    convert_index_png(tmp_path / "leftImg8bit", tmp_path / "gtFine", tmp_path / "labels.txt",
                      tmp_path / "out", image_suffix="_leftImg8bit",
                      mask_suffix="_gtFine_labelIds", progress=False)
    ds = BrodenDataset(tmp_path / "out")
    assert ds.rows[0]["name"] == "index-png/aachen/a_0001.png"
    np.testing.assert_array_equal(_names(ds, ds[0].planes[0]),
                                  _source_names(mask, ["", "road"], ()))


# -- index-png: errors, each naming the file at fault --------------------------------------

def test_missing_mask_names_it_or_is_skipped(tmp_path, index_source):
    _, masks, _, _ = index_source
    (masks / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"masks/b\.png: mask not found for image .*b\.png"):
        _convert(index_source, tmp_path / "out")
    report = _convert(index_source, tmp_path / "out", skip_missing=True)
    assert report.skipped == 1 and report.written + report.resumed == 3


def test_value_beyond_labels_txt_names_the_mask(tmp_path, index_source):
    _, masks, _, _ = index_source
    mask = np.zeros((12, 16), np.uint8)
    mask[5, 7] = 7  # labels.txt has lines 0-6
    Image.fromarray(mask).save(masks / "b.png")
    with pytest.raises(DatasetError) as e:
        _convert(index_source, tmp_path / "out")
    assert str(masks / "b.png") in str(e.value)
    assert "pixel value 7 at (y=5, x=7)" in str(e.value) and "labels.txt" in str(e.value)
    # without --ignore 255, the ignored value is beyond labels.txt too
    images, masks, labels, _ = index_source
    with pytest.raises(DatasetError, match="value 255"):
        convert_index_png(images, masks, labels, tmp_path / "out2", progress=False)


@pytest.mark.parametrize("size", [(16, 12), (12, 12)])
def test_mask_of_another_aspect_ratio_names_the_mask(tmp_path, index_source, size):
    _, masks, _, _ = index_source
    Image.fromarray(np.zeros(size, np.uint8)).save(masks / "b.png")  # image is 12x16
    with pytest.raises(DatasetError, match=rf"masks/b\.png: mask is {size[0]}x{size[1]} but "
                                           r"its image .*b\.png is 12x16"):
        _convert(index_source, tmp_path / "out")


def test_rgb_and_corrupt_masks_and_missing_labels_name_their_file(tmp_path, index_source):
    images, masks, labels, _ = index_source
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(masks / "b.png")
    with pytest.raises(DatasetError, match=r"masks/b\.png: mask has mode RGB"):
        _convert(index_source, tmp_path / "out")
    (masks / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    with pytest.raises(DatasetError, match=r"masks/b\.png: cannot decode mask"):
        _convert(index_source, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"nope\.txt: labels file not found"):
        convert_index_png(images, masks, tmp_path / "nope.txt", tmp_path / "out3",
                          progress=False)


def test_cli_converts_and_reports_errors_in_one_line(tmp_path, index_source, capsys):
    images, masks, labels, _ = index_source
    args = ["data", "convert", "index-png", "--images", str(images), "--masks", str(masks),
            "--labels", str(labels), "--ignore", "255", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    assert "4 image(s) converted" in capsys.readouterr().out
    _check_index_set(tmp_path / "out", index_source)
    (masks / "a.png").unlink()
    assert main(args + ["--out", str(tmp_path / "out2")]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and out.count("\n") == 1 and str(masks / "a.png") in out


# -- COCO panoptic -------------------------------------------------------------------------

COCO_CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 3, "name": "car", "isthing": 1},
    {"id": 187, "name": "sky-other-merged", "isthing": 0},
    {"id": 193, "name": "grass-merged", "isthing": 0},
]


@pytest.fixture()
def coco_source(tmp_path):
    """Three images; segment ids with all three bytes in use; two persons in one image, a
    crowd segment, void pixels."""
    rng = np.random.default_rng(1)
    root = tmp_path / "coco"
    images, masks = root / "val2017", root / "panoptic_val2017"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    data = {"images": [], "annotations": [], "categories": COCO_CATEGORIES}
    truth = {}  # key -> (segment ids, {segment id: category id})
    cat_ids = [1, 1, 3, 187, 193]
    for n in range(3):
        h, w = 10, 14
        stem = f"{n:012d}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            images / f"{stem}.jpg")
        segments = {int(rng.integers(1, 256 ** 3)): c for c in cat_ids}
        ids = rng.choice([0, *segments], size=(h, w))
        rgb = np.stack([ids & 255, ids >> 8 & 255, ids >> 16 & 255], -1).astype(np.uint8)
        Image.fromarray(rgb).save(masks / f"{stem}.png")
        data["images"].append({"id": 100 + n, "file_name": f"{stem}.jpg", "height": h,
                               "width": w})
        data["annotations"].append({
            "image_id": 100 + n, "file_name": f"{stem}.png",
            "segments_info": [{"id": s, "category_id": c, "iscrowd": int(k == 1),
                               "area": int((ids == s).sum())}
                              for k, (s, c) in enumerate(segments.items())]})
        truth[stem] = (ids, segments)
    assert any((ids >> 16).any() for ids, _ in truth.values())  # premise: B carries bits
    path = root / "panoptic_val2017.json"
    path.write_text(json.dumps(data))
    return images, path, masks, truth


def _coco_names(ids, segments, things: bool):
    """Expected names per pixel: the segment's category, for things or for stuff."""
    name = {c["id"]: c["name"] for c in COCO_CATEGORIES}
    thing = {c["id"]: bool(c["isthing"]) for c in COCO_CATEGORIES}
    out = np.full(ids.shape, "", dtype=object)
    for s, c in segments.items():
        if thing[c] == things:
            out[ids == s] = name[c]
    return out


@pytest.mark.parametrize("stuff", ["object", "material"])
def test_coco_panoptic_reads_back_pixel_by_pixel(tmp_path, coco_source, stuff):
    images, path, masks, truth = coco_source
    report = convert_coco_panoptic(images, path, masks, tmp_path / "out",
                                   stuff_category=stuff, progress=False)
    assert report.written == 3
    ds = BrodenDataset(tmp_path / "out")
    cats = ds.vocabulary.categories
    assert cats == (["object"] if stuff == "object" else ["object", "material"])
    rows = _rows_by_key(ds)
    assert sorted(rows) == sorted(truth)
    for key, (ids, segments) in truth.items():
        item = ds[rows[key]]
        got = {cats[c]: _names(ds, p) for c, p in zip(item.plane_categories, item.planes)}
        things, stuffs = _coco_names(ids, segments, True), _coco_names(ids, segments, False)
        if stuff == "object":
            assert list(got) == ["object"]
            np.testing.assert_array_equal(got["object"], np.where(things != "", things, stuffs))
        else:
            np.testing.assert_array_equal(got["object"], things)
            np.testing.assert_array_equal(got["material"], stuffs)
    v = ds.vocabulary
    person = v.label_names.index("person")
    assert v.label_categories[person] == ["object"]
    sky = v.label_names.index("sky-other-merged")
    assert v.label_categories[sky] == [stuff]


def _rewrite(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_coco_errors_name_the_file(tmp_path, coco_source):
    images, path, masks, truth = coco_source
    outs = iter(range(100))  # a new probe set each time (else the images done are skipped)
    run = lambda: convert_coco_panoptic(images, path, masks, tmp_path / f"out{next(outs)}",
                                        progress=False)
    original = path.read_text()

    _rewrite(path, lambda d: d["annotations"][1]["segments_info"][2].pop("category_id"))
    with pytest.raises(DatasetError, match=r"panoptic_val2017\.json: annotations\[1\] "
                                           r"\(000000000001\.png\): segments_info\[2\]: no "
                                           r"integer 'category_id'"):
        run()
    path.write_text(original)
    _rewrite(path, lambda d: d["annotations"][0]["segments_info"][0].update(category_id=99))
    with pytest.raises(DatasetError, match=r"json: annotations\[0\].*category_id 99 is not in"):
        run()
    path.write_text(original)
    _rewrite(path, lambda d: d["annotations"][2]["segments_info"].pop(3))
    with pytest.raises(DatasetError, match=r"panoptic_val2017/000000000002\.png: segment id "
                                           r"\d+ \(RGB .*\) at \(y=\d+, x=\d+\) is not in its "
                                           r"segments_info"):
        run()
    path.write_text("{\"annotations\": [")
    with pytest.raises(DatasetError, match=r"panoptic_val2017\.json: not valid JSON"):
        run()
    path.write_text(original)
    (masks / "000000000001.png").unlink()
    with pytest.raises(DatasetError, match=r"000000000001\.png: panoptic mask not found"):
        run()
    Image.fromarray(np.zeros((14, 10, 3), np.uint8)).save(masks / "000000000001.png")
    with pytest.raises(DatasetError, match=r"000000000001\.png: mask is 14x10 but its image "
                                           r".*000000000001\.jpg is 10x14"):
        run()
    (images / "000000000001.jpg").unlink()
    with pytest.raises(DatasetError, match=r"000000000001\.jpg: image file not found"):
        run()


def test_coco_cli(tmp_path, coco_source, capsys):
    images, path, masks, _ = coco_source
    assert main(["data", "convert", "coco-panoptic", "--images", str(images), "--panoptic-json",
                 str(path), "--panoptic-masks", str(masks), "--stuff-category", "material",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "3 image(s) converted" in capsys.readouterr().out
    assert BrodenDataset(tmp_path / "out").vocabulary.categories == ["object", "material"]


# -- merge ---------------------------------------------------------------------------------

def _broden_b(root: Path) -> Path:
    """A set with "dog" (also in the index-png set), a part, an image-level scene, a label
    no image shows, and an image annotated in part without any part there."""
    obj = np.zeros((4, 4), int)
    obj[:2] = 1
    obj2 = np.zeros((4, 4), int)
    obj2[1:3] = 2
    part = np.zeros((4, 4), int)
    part[3] = 3
    img = np.full((8, 8, 3), 50, np.uint8)
    return write_broden(root, ["object", "part", "scene"],
                        [(1, "dog", {"object": 0.3}), (2, "cat", {"object": 0.1, "part": 0.1}),
                         (3, "leg", {"part": 0.2}), (4, "kitchen", {"scene": 1.0}),
                         (5, "unicorn", {"object": 0.0})],
                        [{"image": img, "planes": {"object": [obj, obj2], "part": [part]},
                          "image_labels": {"scene": [4]}},
                         {"image": img, "planes": {"object": [obj2]},
                          "image_labels": {"part": [0]}}])


def _pixels_by_category(ds: BrodenDataset, i: int) -> Dict[str, List[np.ndarray]]:
    """Image i as {category: [planes as names], ...} plus image-level labels as names."""
    item = ds[i]
    cats = ds.vocabulary.categories
    out: Dict[str, list] = {c: [] for c, a in zip(cats, item.annotated) if a}
    for c, plane in zip(item.plane_categories, item.planes):
        out[cats[c]].append(_names(ds, plane).tolist())
    for n, c in zip(item.image_labels, item.image_label_categories):
        out[cats[c]].append(ds.vocabulary.label_names[n])
    return out


def test_merge_reads_back_as_the_union(tmp_path, index_source):
    _convert(index_source, tmp_path / "a")
    b = _broden_b(tmp_path / "b")
    report = merge_probe_sets([tmp_path / "a", b], tmp_path / "m", progress=False)
    assert report.written == 6
    a_ds, b_ds, m = BrodenDataset(tmp_path / "a"), BrodenDataset(b), BrodenDataset(tmp_path / "m")
    v = m.vocabulary
    assert v.categories == ["object", "part", "scene"]
    # labels of one name merged, their categories kept; a label no image shows is kept
    names = [n for n in v.label_names[1:] if n]
    assert sorted(names) == ["cat", "dog", "kitchen", "leg", "sky", "tree", "unicorn"]
    assert sorted(v.label_categories[v.label_names.index("cat")]) == ["object", "part"]
    assert v.label_categories[v.label_names.index("kitchen")] == ["scene"]
    merged = {Path(r["name"]).with_suffix("").as_posix().split("/", 1)[1]: i
              for i, r in enumerate(m.rows)}
    expected = {}
    for ds in (a_ds, b_ds):
        for i, row in enumerate(ds.rows):
            expected[Path(row["name"]).with_suffix("").as_posix()] = (ds, i)
    assert sorted(merged) == sorted(expected)
    for key, (ds, i) in expected.items():
        j = merged[key]
        assert _pixels_by_category(m, j) == _pixels_by_category(ds, i), key
        np.testing.assert_array_equal(m.load_image(j), ds.load_image(i))


def test_merge_refuses_colliding_keys_or_prefixes(tmp_path, index_source):
    _convert(index_source, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    with pytest.raises(DatasetError, match=r"a2: image index-png/a\.png is also in .*/a \(the "
                                           r"same key in two sets\); --prefix"):
        merge_probe_sets([tmp_path / "a", tmp_path / "a2"], tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()  # refused before anything is written
    merge_probe_sets([tmp_path / "a", tmp_path / "a2"], tmp_path / "m", prefix=True,
                     progress=False)
    m = BrodenDataset(tmp_path / "m")
    assert len(m) == 8
    assert sorted({r["name"].split("/")[1] for r in m.rows}) == ["a", "a2"]
    with pytest.raises(DatasetError, match="given twice"):
        merge_probe_sets([tmp_path / "a", tmp_path / "a"], tmp_path / "m3", progress=False)


def test_merge_cli(tmp_path, index_source, capsys):
    _convert(index_source, tmp_path / "a")
    b = _broden_b(tmp_path / "b")
    assert main(["data", "merge", str(tmp_path / "a"), str(b), "--out", str(tmp_path / "m"),
                 "--quiet"]) == 0
    assert "6 image(s) merged" in capsys.readouterr().out
    assert len(BrodenDataset(tmp_path / "m")) == 6
    report = merge_probe_sets([tmp_path / "a", b], tmp_path / "m", progress=False)
    assert (report.written, report.resumed) == (0, 6)  # a second call: nothing left to do


# -- info ----------------------------------------------------------------------------------

def test_info_counts_against_the_source_masks(tmp_path, index_source):
    _, _, _, truth = index_source
    _convert(index_source, tmp_path / "out")
    q, cutoff = 0.05, 0.04
    info = probe_set_info(tmp_path / "out", quantile=q, cutoff=cutoff, min_images=3,
                          progress=False)
    assert info.images == 4
    assert info.image_sizes == {"12x16": 3, "10x8": 1}
    assert info.label_sizes == {"12x16": 2, "6x8": 1, "10x8": 1}
    total = sum(m.size for m in truth.values())
    named = {k: _source_names(m) for k, m in truth.items()}
    (cat,) = info.categories
    assert (cat.name, cat.images, cat.labels, cat.pixels) == ("object", 4, 4, total)
    assert cat.labelled_pixels == sum(int((n != "").sum()) for n in named.values())
    by_name = {l.name: l for l in info.labels}
    assert sorted(by_name) == ["cat", "dog", "sky", "tree"]
    for name, label in by_name.items():
        g = sum(int((n == name).sum()) for n in named.values())
        seen = sum(bool((n == name).any()) for n in named.values())
        assert (label.pixels, label.images, label.union_pixels) == (g, seen, total)
        a = q * total
        assert label.iou_bound == pytest.approx(min(a, g) / max(a, g))
        assert bool(label.rare) == (min(a, g) / max(a, g) <= cutoff or seen < 3)


def test_info_flags_rare_labels_and_multi_category_counts(tmp_path, capsys):
    """A label in planes of two categories counts once per pixel; an image-level label covers
    its image; a label too small for IoU and a label in one image are flagged."""
    size = (20, 20)
    wall = np.zeros(size, int)
    wall[:10] = 1  # 200 px in every image
    speck = wall.copy()
    speck[15, 0] = 2  # 1 px, in one image
    part = np.zeros(size, int)
    part[:5] = 1  # wall again, as a part, inside the object plane's wall
    part[19, 19] = 3  # the image-level "kitchen" at a pixel too: the image still counts once
    img = np.zeros((20, 20, 3), np.uint8)
    images = [{"image": img, "planes": {"object": [wall], "part": [part]},
               "image_labels": {"scene": [3]}},
              {"image": img, "planes": {"object": [speck]}}]
    images += [{"image": img, "planes": {"object": [wall]}} for _ in range(10)]
    root = write_broden(tmp_path / "set", ["object", "part", "scene"],
                        [(1, "wall", {"object": 0.5, "part": 0.1}), (2, "speck", {"object": 0.0}),
                         (3, "kitchen", {"scene": 1.0})], images)
    q = 0.01
    info = probe_set_info(root, quantile=q, cutoff=0.04, min_images=10, progress=False)
    labels = {l.name: l for l in info.labels}
    assert (labels["wall"].pixels, labels["wall"].images) == (12 * 200, 12)
    assert (labels["speck"].pixels, labels["speck"].images) == (1, 1)
    assert (labels["kitchen"].pixels, labels["kitchen"].images) == (400, 1)
    assert labels["wall"].union_pixels == 12 * 400  # object or part annotated: every image
    assert labels["speck"].union_pixels == 12 * 400
    assert labels["kitchen"].union_pixels == 400  # scene annotated on one image
    a = q * 12 * 400  # a unit's mask: 48 px
    assert labels["speck"].iou_bound == pytest.approx(1 / a)
    assert labels["wall"].iou_bound == pytest.approx(a / 2400)
    assert labels["speck"].rare == "too few pixels"  # 1 px <= 0.04 * 48 px
    assert labels["kitchen"].rare == "in fewer than 10 images"  # 400 px > 0.04 * 4 px
    assert not labels["wall"].rare  # large, in 12 images
    cats = {c.name: c for c in info.categories}
    assert (cats["object"].images, cats["object"].labels) == (12, 2)
    assert (cats["object"].labelled_pixels, cats["object"].pixels) == (12 * 200 + 1, 12 * 400)
    assert (cats["part"].images, cats["part"].labelled_pixels, cats["part"].pixels) == \
        (1, 101, 400)
    assert (cats["scene"].images, cats["scene"].labelled_pixels, cats["scene"].pixels) == \
        (1, 400, 400)

    assert main(["data", "info", str(root), "--quantile", str(q), "--json",
                 str(tmp_path / "info.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "12 images" in out and "2 of 3 labels too rare" in out
    assert "speck" in out and "kitchen" in out
    data = json.loads((tmp_path / "info.json").read_text())
    assert data["images"] == 12 and len(data["labels"]) == 3
    assert data["categories"][1]["coverage"] == pytest.approx(101 / 400)
    bad = tmp_path / "missing" / "info.json"  # its folder does not exist
    assert main(["data", "info", str(root), "--json", str(bad), "--quiet"]) == 2
    err = "".join(capsys.readouterr())
    assert f"{bad}: cannot write" in err and "unexpected" not in err


# -- sizes ---------------------------------------------------------------------------------

def test_nearest_resize_takes_block_centres_and_repeats():
    from ndcore.data.probesets.convert_common import resize_nearest

    plane = np.random.default_rng(2).integers(0, 9, (15, 21))
    np.testing.assert_array_equal(resize_nearest(plane, (5, 7)), plane[1::3, 1::3])
    np.testing.assert_array_equal(resize_nearest(plane, (30, 63)),
                                  np.repeat(np.repeat(plane, 2, 0), 3, 1))


def _nearest(mask: np.ndarray, size) -> np.ndarray:
    """The source pixel under each output pixel's centre (a centre on a boundary: the later
    pixel), in exact fractions."""
    (H, W), (h, w) = mask.shape, size
    rows = [int(Fraction(2 * y + 1, 2 * h) * H) for y in range(h)]
    cols = [int(Fraction(2 * x + 1, 2 * w) * W) for x in range(w)]
    return mask[np.ix_(rows, cols)]


def test_sizes_resize_images_and_nearest_labels(tmp_path, index_source):
    """--size / --label-size: one image size and one label size, labels never blended."""
    from ndcore.data.probesets.convert_common import Sizing

    _, _, _, truth = index_source
    _convert(index_source, tmp_path / "out", sizing=Sizing((8, 8), (4, 6)))
    ds = BrodenDataset(tmp_path / "out")
    rows = _rows_by_key(ds)
    for key, mask in truth.items():
        item = ds[rows[key]]
        assert item.image.shape == (8, 8, 3) and tuple(item.label_size) == (4, 6)
        np.testing.assert_array_equal(_names(ds, item.planes[0]),
                                      _source_names(_nearest(mask, (4, 6))))


def test_cli_warns_of_several_label_sizes(tmp_path, index_source, capsys):
    images, masks, labels, _ = index_source
    args = ["data", "convert", "index-png", "--images", str(images), "--masks", str(masks),
            "--labels", str(labels), "--ignore", "255", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    assert "warning: label planes of 3 sizes (6x8, 10x8, 12x16)" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "out2"), "--size", "8", "--label-size",
                        "4x6"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert {tuple(r["sizes"]) for r in BrodenDataset(tmp_path / "out2").rows} == {(8, 8, 4, 6)}


def test_a_converted_set_dissects_with_the_planted_unit_on_its_label(tmp_path, coco_source):
    """`broden:` on a converted set, end to end: a unit that is the red channel, on images red
    exactly where COCO says "person", has IoU 1 with person (labels at the images' size)."""
    import torch
    from torch import nn

    from ndcore.api import run_dissection
    from ndcore.models import ModelAdapter, Preprocess

    images, path, masks, truth = coco_source
    data = json.loads(path.read_text())
    for entry in data["images"]:
        stem = Path(entry["file_name"]).stem
        ids, segments = truth[stem]
        rgb = np.zeros((*ids.shape, 3), np.uint8)
        rgb[..., 0] = 255 * (_coco_names(ids, segments, True) == "person")
        Image.fromarray(rgb).save(images / f"{stem}.png")  # lossless: red is exactly that
        entry["file_name"] = f"{stem}.png"
    path.write_text(json.dumps(data))
    share = np.mean([(_coco_names(i, s, True) == "person").mean() for i, s in truth.values()])
    assert 0 < share < 0.5  # premise of the threshold below
    convert_coco_panoptic(images, path, masks, tmp_path / "out", progress=False)
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1))
        conv.bias.zero_()
    adapter = ModelAdapter("red", nn.Sequential(conv, nn.Flatten()),
                           Preprocess((0, 0, 0), (255, 255, 255)))
    # person covers well under half the pixels: the top half's threshold is 0, the mask person
    result = run_dissection(adapter, ["0"], BrodenDataset(tmp_path / "out"), quantile=0.5,
                            batch_size=2)
    layer = result["0"]
    person = layer.vocabulary.label_names.index("person")
    assert layer.iou[0, person] == pytest.approx(1.0)
    assert layer.units[0].label == "person"


def test_readme_commands_parse():
    """The README's section's commands name options that exist."""
    import re
    import shlex

    from ndcore.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Converting a segmentation dataset", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = re.sub(r"\\\n\s*", "", re.sub(r"#.*", "", block)).splitlines()
    commands = [c.split("ndcore", 1)[1] for c in commands if "ndcore data" in c]
    assert len(commands) == 4
    for command in commands:
        build_parser().parse_args(shlex.split(command))
