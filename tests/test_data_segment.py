"""`ndcore data segment` and `--dataset images:DIR --segmenter SEG`: a segmented probe set read
back by `broden:` is the segmenter's own output, pixel by pixel; an interrupted run resumes
into the same set; both ways of dissecting give the same numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ndcore
from ndcore.cli import main
from ndcore.data.broden import BrodenDataset
from ndcore.data.probesets.images import ImageFolderSource
from ndcore.data.probesets.segment import segment_folder
from ndcore.data.probesets.writer import JOURNAL
from ndcore.data.segmenters import ColorSegmenter, Segmentation, Segmenter
from ndcore.data.synthetic import generate
from ndcore.data.view import resize_image
from ndcore.data.vocabulary import Vocabulary
from ndcore.errors import DatasetError, NdcoreError


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """12 JPEGs (some in a subfolder) and one PNG, from the synthetic set."""
    syn = generate(tmp_path_factory.mktemp("syn") / "ds", size=12, seed=4, image_size=48,
                   label_size=24)
    root = tmp_path_factory.mktemp("imgs") / "photos"
    (root / "sub").mkdir(parents=True)
    for i, jpg in enumerate(sorted((syn / "images" / "synthetic").glob("*.jpg"))):
        shutil.copy(jpg, root / ("sub" if i % 3 == 0 else "") / f"im {i}.jpg")
    Image.open(jpg).save(root / "sub" / "last.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _segment(images, out, *extra) -> None:
    assert main(["data", "segment", str(images), "--segmenter", "colors", "--out", str(out),
                 "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def probe(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "set"
    _segment(images, out)
    return out


def _files(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix in (".jpg", ".png"))


def test_read_back_equals_the_segmenter(images, probe):
    ds = BrodenDataset(probe)
    files = _files(images)
    assert len(ds) == len(files) == 13
    oracle = ColorSegmenter()  # the segmenter itself, run here on the source files
    names = ds.vocabulary.label_names
    for i, rel in enumerate(files):  # sorted paths: the order of index.csv
        item = ds[i]
        assert item.error is None
        rgb = _rgb(images / rel)
        assert np.array_equal(item.image, rgb), rel  # copied as is
        want = oracle.segment(torch.from_numpy(rgb).permute(2, 0, 1)[None]).labels[0, 0].numpy()
        assert item.planes.shape == (1, *rgb.shape[:2])
        got = np.vectorize(lambda n: names[n])(item.planes[0])
        assert np.array_equal(got, np.asarray(oracle.vocabulary.label_names)[want]), rel
        assert item.annotated.tolist() == [True]
    assert ds.vocabulary.categories == ["color"]


def test_resize_stores_what_was_labelled(images, tmp_path):
    out = tmp_path / "small"
    _segment(images, out, "--resize", "20x30")
    ds = BrodenDataset(out)
    rgb = resize_image(_rgb(images / _files(images)[0]), (20, 30))
    assert np.array_equal(ds[0].image, rgb)  # stored losslessly, as labelled
    want = ColorSegmenter().segment(torch.from_numpy(rgb).permute(2, 0, 1)[None]).labels[0]
    assert np.array_equal(ds[0].planes, want.numpy())  # colors: label numbers kept as they are


class _Shapes(Segmenter):
    """Two categories, a label ("edge") in both, planes of unknown category, and images it
    cannot label (mean brightness under 100)."""

    name = "shapes"

    def __init__(self, fail_after=None):
        cats = [["object"], ["part"], ["object", "part"]]
        self.vocabulary = Vocabulary(["object", "part"], ["-", "blob", "dot", "edge"],
                                     [[]] + cats, np.array([-1, 0, 1, 0]),
                                     [{}] + [{c: 1.0 for c in cs} for cs in cats])
        self.calls, self.fail_after = 0, fail_after

    def segment(self, images):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("segmenter crashed")
        x = images[:, 0].long()
        a = torch.where(x > 128, 1, torch.where(x > 64, 3, 0))
        b = torch.where(images[:, 1].long() > 100, 2, 0)
        valid = images.float().mean(dim=(1, 2, 3)) >= 100
        return Segmentation(torch.stack([a, b], 1), valid=valid)


def _shapes_oracle(rgb):
    """The _Shapes labels per category, from its definition."""
    r, g = rgb[..., 0].astype(int), rgb[..., 1].astype(int)
    a = np.where(r > 128, 1, np.where(r > 64, 3, 0))
    b = np.where(g > 100, 2, 0)
    obj = [np.where(np.isin(a, [1, 3]), a, 0)]
    part = [np.where(a == 3, 3, 0), b]
    return {"object": obj, "part": part}, rgb.mean() >= 100


def test_categories_of_unknown_planes_and_invalid_images(images, tmp_path):
    out = tmp_path / "shapes"
    segment_folder(images, _Shapes(), "shapes", out, progress=False)
    ds = BrodenDataset(out)
    rows = (out / "label.csv").read_text()
    assert "edge,object(" in rows or "edge,part(" in rows  # declared in both categories
    saw_invalid = False
    for i, rel in enumerate(_files(images)):
        item = ds[i]
        want, valid = _shapes_oracle(_rgb(images / rel))
        saw_invalid |= not valid
        assert item.annotated.tolist() == [valid, valid], rel
        cats = [ds.vocabulary.categories[c] for c in item.plane_categories]
        for c, cat in enumerate(ds.vocabulary.categories):
            got = item.planes[[j for j, k in enumerate(cats) if k == cat]]
            for number in (1, 2, 3):  # each label's pixels in this category
                expected = np.any([p == number for p in want[cat]], axis=0) & valid
                assert np.array_equal(np.any(got == number, axis=0), expected), \
                    (rel, cat, number)
    assert saw_invalid  # premise: the adversarial case occurs


def test_images_source_yields_what_the_written_set_reads_back(images, tmp_path):
    out = tmp_path / "shapes"
    segment_folder(images, _Shapes(), "shapes", out, progress=False)
    written = BrodenDataset(out)
    onthefly = ImageFolderSource(images, _Shapes(), "shapes")
    assert len(onthefly) == len(written)
    for i in range(len(written)):
        a, b = written[i], onthefly[i]
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.planes, b.planes), i
        assert list(a.plane_categories) == list(b.plane_categories), i
        assert a.annotated.tolist() == b.annotated.tolist(), i
        assert tuple(a.label_size) == tuple(b.label_size)
        assert list(a.image_labels) == list(b.image_labels) == []


def _tree(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != JOURNAL}


def test_interrupted_run_resumes_into_the_same_set(images, tmp_path):
    whole = tmp_path / "whole"
    segment_folder(images, _Shapes(), "shapes", whole, progress=False)
    out = tmp_path / "resumed"
    crashing = _Shapes(fail_after=5)
    with pytest.raises(RuntimeError, match="crashed"):
        segment_folder(images, crashing, "shapes", out, progress=False)
    assert not (out / "index.csv").exists()  # premise: it stopped part way
    again = _Shapes()
    summary = segment_folder(images, again, "shapes", out, progress=False)
    assert (summary.images, summary.written, again.calls) == (13, 8, 8)  # only what was left
    assert _tree(out) == _tree(whole)
    # Another segmenter (or --resize) on the same directory: refused, in one line.
    with pytest.raises(DatasetError, match="started with meta"):
        segment_folder(images, _Shapes(), "other", out, progress=False)


@pytest.mark.slow  # starts two processes
def test_workers_write_the_same_set(images, probe, tmp_path):
    out = tmp_path / "workers"
    _segment(images, out, "--workers", "2")
    assert _tree(out) == _tree(probe)


def test_errors_name_what_is_wrong(images, probe, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "segment", str(empty), "--segmenter", "colors", "--out",
                 str(tmp_path / "o")]) == 2
    assert "no JPEG or PNG images" in "".join(capsys.readouterr())
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copy(images / "im 1.jpg", clash / "a.jpg")
    shutil.copy(images / "sub" / "last.png", clash / "a_color.png")  # named like a's plane
    assert main(["data", "segment", str(clash), "--segmenter", "colors", "--out",
                 str(tmp_path / "o")]) == 2
    assert "a_color.png: its name is that of a label plane" in "".join(capsys.readouterr())
    with pytest.raises(NdcoreError, match="have labels of their own"):
        ndcore.dissect("demo", ["conv2"], f"broden:{probe}", segmenter="colors")
    with pytest.raises(DatasetError, match="give --segmenter SEG"):
        ndcore.dissect("demo", ["conv2"], f"images:{images}")


def test_a_jpeg_named_like_a_plane_collides_only_when_stored_as_png(images, tmp_path, capsys):
    """``a_color.jpg`` is copied as a JPEG, ``a``'s colour plane is ``a_color.png``: no
    collision; resized, both images are stored as PNG and it collides."""
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copy(images / "im 1.jpg", folder / "a.jpg")
    shutil.copy(images / "im 2.jpg", folder / "a_color.jpg")
    _segment(folder, tmp_path / "o")
    files = _files(tmp_path / "o" / "images")
    assert {"named/a.jpg", "named/a_color.jpg", "named/a_color.png"} <= set(files)
    assert "named/a_color_color.png" in files  # premise: the colors segmenter wrote planes
    assert len(BrodenDataset(tmp_path / "o")) == 2
    assert main(["data", "segment", str(folder), "--segmenter", "colors", "--out",
                 str(tmp_path / "r"), "--resize", "24", "--quiet"]) == 2
    assert "a_color.jpg: its name is that of a label plane" in "".join(capsys.readouterr())


RUN = ["--model", "demo", "--layers", "conv2,conv4", "--quiet", "--no-report", "--workers", "0",
       "--batch-size", "4", "--null-permutations", "20", "--bootstrap", "0"]


@pytest.mark.slow
def test_images_dataset_dissects_as_the_written_set(images, probe, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["dissect", *RUN, "--dataset", f"broden:{probe}", "--out", str(a)]) == 0
    assert main(["dissect", *RUN, "--dataset", f"images:{images}", "--segmenter", "colors",
                 "--out", str(b)]) == 0
    for layer in ("conv2", "conv4"):
        for name in ("thresholds.npy", "iou.npy", "counts.npz", "tally.csv"):
            assert (a / layer / name).read_bytes() == (b / layer / name).read_bytes(), name
    # The Python API with a Segmenter object: the same numbers again.
    with pytest.warns(UserWarning, match="IoUs are noise"):  # 13 images: true, and the same
        r = ndcore.dissect("demo", ["conv4"], f"images:{images}", segmenter=ColorSegmenter(),
                           batch_size=4, null_permutations=20, bootstrap=0)
    iou = r.layers["conv4"].iou.astype(np.float32)  # saved as float32
    assert np.array_equal(np.load(a / "conv4" / "iou.npy"), iou)


@pytest.mark.slow
def test_readme_commands_run(images, tmp_path):
    """The README's "Your own images" commands, run as written (paths swapped for the test's)."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [c.split("ndcore", 1)[1] for c in re.sub(r"#.*", "", block).splitlines()
                if "ndcore" in c]
    assert len(commands) == 2
    for command in commands:
        argv = [a.replace("photos/", f"{images}/").replace("probes/photos", str(tmp_path / "p"))
                .replace("runs/photos", str(tmp_path / "r")) for a in shlex.split(command)]
        if argv[0] == "dissect":
            argv += ["--quiet", "--no-report", "--workers", "0", "--null-permutations", "0",
                     "--bootstrap", "0"]
        assert main(argv) == 0, argv
    assert (tmp_path / "r" / "conv4" / "iou.npy").is_file()
