"""ProbeSetWriter: a Broden-format probe set that `broden:` reads back exactly, tables counted
from the definition (docs/method.md section 12), and resumable after a kill at any moment."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ndcore.data.broden import BrodenDataset
from ndcore.data.probesets.writer import JOURNAL, ProbeSetWriter
from ndcore.data.validate import ItemValidator, check_probe_source
from ndcore.errors import DatasetError, NdcoreError

CATS = ["object", "part", "scene", "color"]
NAMES = {"object": ["tree", "car"], "part": ["wheel", "car"], "scene": ["street", "park"],
         "color": ["red", "green", "blue"]}


def _rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _content(n: int = 6, size=(10, 12), seed: int = 0):
    """Deterministic images and annotations: a dict key -> (image, planes, image_labels) in
    label *names*, so that the oracle does not depend on the writer's numbering."""
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(n):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        planes = {"color": rng.choice(["-", *NAMES["color"]], size=(1, *size))}
        if i % 2 == 0:  # objects: two planes that overlap on a few pixels (same label there)
            a = rng.choice(["-", *NAMES["object"]], size=size)
            b = np.where(rng.random(size) < 0.3, a, "-")
            planes["object"] = np.stack([a, b])
        if i % 3 == 0:
            planes["part"] = rng.choice(["-", *NAMES["part"]], size=(1, *size))
        image_labels = {"scene": [NAMES["scene"][i % 2]]} if i != 4 else {}
        items[f"dir{i % 2}/img {i}.jpg"] = (image, planes, image_labels)
    return items


def _write(writer: ProbeSetWriter, items, keys=None) -> None:
    for cat in CATS:
        for name in NAMES[cat]:
            writer.label(name, cat)
    numbers = {}
    for cat in CATS:
        for name in NAMES[cat]:
            numbers[name] = writer.label(name, cat)
    for key in keys or list(items):
        image, planes, image_labels = items[key]
        as_numbers = {c: np.vectorize(lambda s: numbers.get(s, 0))(p) for c, p in planes.items()}
        writer.add(key, image, as_numbers,
                   {c: [numbers[s] for s in v] for c, v in image_labels.items()})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("ps") / "set"
    items = _content()
    with ProbeSetWriter(out, CATS, source="mine") as w:
        _write(w, items)
        w.finish()
    return out, items


def test_read_back_pixel_by_pixel(written):
    out, items = written
    ds = BrodenDataset(out)
    assert check_probe_source(ds) is None
    check = ItemValidator(ds.vocabulary, "test")
    names = ds.vocabulary.label_names
    assert len(ds) == len(items)
    by_name = {row["name"]: i for i, row in enumerate(ds.rows)}
    for key, (image, planes, image_labels) in items.items():
        item = ds[by_name["mine/" + key.replace(" ", "_").replace(".jpg", ".png")]]
        assert item.error is None and check(item) is None
        assert np.array_equal(item.image, image)  # arrays are stored losslessly
        cats = [ds.vocabulary.categories[c] for c in item.plane_categories]
        for cat in CATS:
            annotated = cat in planes or cat in image_labels
            assert item.annotated[ds.vocabulary.categories.index(cat)] == annotated, (key, cat)
        for cat, expected in planes.items():
            got = item.planes[[j for j, c in enumerate(cats) if c == cat]]
            got_names = np.vectorize(lambda n: names[n] if n else "-")(got)
            # The reader drops a label repeated at a pixel within one category.
            want = expected.copy()
            for j in range(1, len(want)):
                want[j][(want[j] == want[0]) & (want[j] != "-")] = "-"
            assert np.array_equal(got_names, want), (key, cat)
        assert sorted(names[n] for n in item.image_labels) == \
            sorted(s for v in image_labels.values() for s in v)


def test_tables_counted_from_the_definition(written):
    out, items = written
    labels = {r["name"]: r for r in _rows(out / "label.csv")}
    cats = _rows(out / "category.csv")
    assert [c["name"] for c in cats] == CATS
    for cat in CATS:
        annotated = sum(1 for _, p, il in items.values() if cat in p or cat in il)
        assert int(next(c for c in cats if c["name"] == cat)["frequency"]) == annotated
        table = {r["name"]: r for r in _rows(out / f"c_{cat}.csv")}
        assert set(table) == set(NAMES[cat]), cat
        for name in NAMES[cat]:
            freq, cov = 0, 0.0
            for _, planes, image_labels in items.values():
                if cat in planes:
                    area = np.any(planes[cat] == name, axis=0)
                    freq += bool(area.any())
                    cov += area.mean()
                if name in image_labels.get(cat, ()):
                    freq, cov = freq + 1, cov + 1.0
            assert int(table[name]["frequency"]) == freq, (cat, name)
            assert float(table[name]["coverage"]) == pytest.approx(cov, abs=1e-4), (cat, name)
    # "car" is an object and a part: both listed, with counts; numbers are global.
    assert labels["car"]["category"].count("(") == 2
    anywhere = sum(1 for _, p, il in items.values()
                   if any((v == "car").any() for v in p.values()))
    assert int(labels["car"]["frequency"]) == anywhere


def test_image_files_copied_or_converted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rgb = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "a.JPG", format="JPEG")
    Image.fromarray(rgb).save(src / "b.bmp")
    with ProbeSetWriter(tmp_path / "out", ["color"], source="s") as w:
        red = w.label("red", "color")
        w.add("a.JPG", src / "a.JPG", {"color": np.full((4, 5), red)})
        w.add("b.bmp", src / "b.bmp", {}, label_size=(4, 5))
        w.finish()
    ds = BrodenDataset(tmp_path / "out")
    rows = {r["image"]: r for r in _rows(tmp_path / "out" / "index.csv")}
    assert set(rows) == {"s/a.jpg", "s/b.bmp.png"}  # only .jpg/.jpeg/.png suffixes dropped
    assert (tmp_path / "out/images/s/a.jpg").read_bytes() == (src / "a.JPG").read_bytes()
    assert [rows["s/b.bmp.png"][k] for k in ("ih", "iw", "sh", "sw", "color")] == \
        ["8", "9", "4", "5", ""]
    assert np.array_equal(ds.load_image(1), rgb)  # BMP -> PNG, lossless


def test_bad_input_is_one_line_naming_it(tmp_path):
    w = ProbeSetWriter(tmp_path / "o", ["object"], source="s")
    img = np.zeros((4, 4, 3), np.uint8)
    n = w.label("tree", "object")
    with pytest.raises(DatasetError, match="img1.*label number 2"):
        w.add("img1", img, {"object": np.full((4, 4), n + 1)})
    with pytest.raises(NdcoreError, match="img1.*'part'"):
        w.add("img1", img, {"part": np.zeros((4, 4), int)})
    with pytest.raises(NdcoreError, match="'\\.\\./x'"):
        w.add("../x", img, {})
    with pytest.raises(NdcoreError, match="category 'a b'"):
        ProbeSetWriter(tmp_path / "o2", ["a b"], source="s")
    w.add("x.jpg", img, {})
    with pytest.raises(DatasetError,
                       match="x.png: its file images/s/x.png is already written for 'x.jpg'"):
        w.add("x.png", img, {})
    # One writer per directory.
    with pytest.raises(DatasetError, match="another process"):
        ProbeSetWriter(tmp_path / "o", ["object"], source="s")
    w.close()
    # Other options than the set was started with.
    with pytest.raises(DatasetError, match="started with categories"):
        ProbeSetWriter(tmp_path / "o", ["object", "part"], source="s")
    # A directory with other things in it.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "index.csv").write_text("x")
    with pytest.raises(DatasetError, match="busy.*not a probe set"):
        ProbeSetWriter(tmp_path / "busy", ["object"], source="s")


def _tree(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != JOURNAL}


def test_resume_equals_uninterrupted(tmp_path, written):
    out, items = written
    keys = list(items)
    resumed = tmp_path / "resumed"
    w = ProbeSetWriter(resumed, CATS, source="mine")
    _write(w, items, keys[:3])
    w.close()  # stopped without finish()
    w = ProbeSetWriter(resumed, CATS, source="mine")
    assert w.done() == set(keys[:3])
    _write(w, items, [k for k in keys if k not in w.done()])
    w.finish()
    w.close()
    assert _tree(resumed) == _tree(out)


_KILLER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import test_probeset_writer as t
    from ndcore.data.probesets import writer as mod

    items, stage = t._content(), sys.argv[1]
    real_write, appended = os.write, [0]
    def dying_write(fd, data):
        appended[0] += 1
        if appended[0] == 12:  # the journal line of the 3rd image (after 9 label lines)
            if stage == "torn":
                real_write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)
    mod.os.write = dying_write
    w = mod.ProbeSetWriter({out!r}, t.CATS, source="mine")
    t._write(w, items)
""")


@pytest.mark.parametrize("stage", ["before-journal", "torn"])
def test_sigkill_loses_at_most_the_image_being_written(tmp_path, written, stage):
    out, items = written
    target = tmp_path / "killed"
    script = _KILLER.format(tests=str(Path(__file__).parent), out=str(target))
    proc = subprocess.run([sys.executable, "-c", script, stage], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == -9, proc.stderr.decode()  # premise: it died mid-image
    w = ProbeSetWriter(target, CATS, source="mine")
    assert w.done() == set(list(items)[:2])
    _write(w, items, [k for k in items if k not in w.done()])
    w.finish()
    w.close()
    assert _tree(target) == _tree(out)
    with ProbeSetWriter(target, CATS, source="mine") as again:  # the journal stays readable
        assert again.done() == set(items)


def test_a_key_is_written_once(tmp_path):
    """Re-adding a written key would rewrite its files before the journal knows (a kill then
    leaves files that disagree with the journal): refused in one line, the files untouched,
    also after reopening."""
    first, second = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)
    image = tmp_path / "o" / "images" / "s" / "k.png"
    with ProbeSetWriter(tmp_path / "o", ["object"], source="s") as w:
        w.add("k", first, {})
        before = image.read_bytes()
        with pytest.raises(DatasetError, match="^k: already written"):
            w.add("k", second, {})
    assert image.read_bytes() == before
    with ProbeSetWriter(tmp_path / "o", ["object"], source="s") as w:
        with pytest.raises(DatasetError, match="^k: already written"):
            w.add("k", second, {})
        w.finish()
    assert image.read_bytes() == before
    assert len((tmp_path / "o" / "index.csv").read_text().splitlines()) == 2  # header + k


def test_label_pngs_decode_with_pil(tmp_path):
    """The writer's own PNG encoder, read by an independent decoder (PIL): R + 256 G, B = 0,
    for numbers above 255 and odd sizes too."""
    plane = np.random.default_rng(2).integers(0, 701, (2, 7, 13))
    with ProbeSetWriter(tmp_path / "o", ["object"], source="s") as w:
        for i in range(700):
            w.label(f"l{i}", "object")
        w.add("a", np.zeros((7, 13, 3), np.uint8), {"object": plane})
    for k in (1, 2):
        rgb = np.asarray(Image.open(tmp_path / "o" / "images" / "s" / f"a_object_{k}.png"))
        assert rgb.shape == (7, 13, 3) and not rgb[..., 2].any()
        assert np.array_equal(rgb[..., 0] + 256 * rgb[..., 1].astype(int), plane[k - 1])
