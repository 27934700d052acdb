"""The plugin contract (issue 8), checked with third-party plugin packages built in the tests.

The plugins are written to a temporary folder with their own dist-info (``plugin_fixture``), so
entry-point discovery is the real thing, in process (``use_plugins``) and in a subprocess
(``PYTHONPATH``). Every case checks its exact one-line message and exit status, and that a
failed run leaves nothing half-written.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ndcore import hookimpl
from ndcore.cli import main
from ndcore.data.probe import ProbeItem, ProbeSource, ProbeSourceInfo
from ndcore.data.validate import ItemValidator
from ndcore.data.view import SourceView
from ndcore.data.vocabulary import Vocabulary
from ndcore.errors import DatasetError, PluginError
from ndcore.plugins import PluginManager
from plugin_fixture import make_plugin, plugin_env, use_plugins

REPO = Path(__file__).resolve().parents[1]

TESTKIT = r'''
"""A third-party ndcore plugin written only against ndcore.plugin_api."""
import os

import numpy as np
import torch
from torch import nn

from ndcore.plugin_api import (ModelAdapter, Preprocess, ProbeItem, ProbeSource,
                               ProbeSourceInfo, Vocabulary, hookimpl)

CATEGORIES = ["object", "part", "color", "texture"]
NAMES = ["-", "square", "disc", "red", "striped"]
LABEL_CATS = [[], ["object"], ["object", "part"], ["color"], ["texture"]]

if os.environ.get("NDTEST_IMPORT_MARKER"):
    with open(os.environ["NDTEST_IMPORT_MARKER"], "a") as f:
        f.write("imported\n")


def fault(name, index):
    return os.environ.get(name) is not None and int(os.environ[name]) == index


def build_tiny(target, request):
    width = int(target or 4)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(width, width, 3, padding=1))
    return ModelAdapter(spec=f"tiny:{width}", module=module,
                        preprocess=Preprocess((0, 0, 0), (255, 255, 255), name="unit"),
                        input_size=(32, 32), description="a tiny CNN")


def build_raises(target, request):
    raise ValueError("boom")


def build_wrong_type(target, request):
    return nn.Conv2d(3, 3, 1)


class Blobs(ProbeSource):
    """In memory, no files. Ignores the request's hints on purpose: the engine applies them."""

    def __init__(self, n, mixed=False):
        self.n, self.mixed = n, mixed
        self.vocabulary = Vocabulary(CATEGORIES, NAMES, LABEL_CATS,
                                     np.array([-1, 0, 0, 2, 3]))
        self.info = ProbeSourceInfo(spec=f"blobs:n={n},mixed={int(mixed)}", kind="blobs",
                                    size=n)

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if fault("NDTEST_READ_RAISES", index):
            raise KeyError("no such blob")
        rng = np.random.default_rng(index)
        h, w = (40, 48) if self.mixed and index % 2 else (32, 32)
        image = np.full((h, w, 3), 40, np.uint8)
        object_plane = np.zeros((16, 16), np.int32)
        part_plane = np.zeros((16, 16), np.int32)
        y, x = (int(v) for v in rng.integers(0, 8, size=2))
        object_plane[y:y + 6, x // 2:x // 2 + 4] = 1  # a square, left half
        image[2 * y * h // 32:(2 * y + 12) * h // 32, :, 1] = 220
        object_plane[y:y + 4, 10:14] = 2  # a disc, right half: an object and a part
        part_plane[y:y + 4, 10:14] = 2
        color_plane = np.zeros((16, 16), np.int32)
        if index % 3 == 0:
            image[..., 0] = 200
            color_plane[:] = 3
        planes = [object_plane, part_plane, color_plane]
        cats = [0, 1, 2]
        if fault("NDTEST_BAD_LABEL", index):
            planes[0][3, 5] = 9
        if fault("NDTEST_REPEAT", index):
            planes.append(object_plane.copy())
            cats.append(0)
        striped = index % 2 == 0
        annotated = np.array([True, True, True, striped])
        if fault("NDTEST_BAD_ANNOTATED", index):
            annotated = np.array([True, True])
        return ProbeItem(index=index, image=image, planes=np.stack(planes),
                         plane_categories=cats, image_labels=[4] if striped else [],
                         image_label_categories=[3] if striped else [],
                         annotated=annotated, label_size=(16, 16))


def build_blobs(target, request):
    params = dict(p.split("=") for p in target.split(",") if p) if target else {}
    return Blobs(int(params.get("n", 200)), mixed=params.get("mixed") == "1")


@hookimpl
def ndcore_register_models(register):
    register("tiny", build_tiny, description="testkit: a tiny CNN, tiny:WIDTH")
    register("raises", build_raises, description="testkit: a factory that raises")
    register("wrongtype", build_wrong_type, description="testkit: returns an nn.Module")


@hookimpl
def ndcore_register_datasets(register):
    register("blobs", build_blobs, description="testkit: in-memory blobs, blobs:n=N[,mixed=1]")
'''

# Registers ndcore's built-in name 'torchvision' (and takes its entry-point name), and the
# testkit's 'blobs'.
EVIL = '''
from ndcore.plugin_api import hookimpl

def build(target, request):
    raise RuntimeError("the evil factory was called")

@hookimpl
def ndcore_register_models(register):
    register("torchvision", build, description="evil torchvision")

@hookimpl
def ndcore_register_datasets(register):
    register("blobs", build, description="evil blobs")
'''

# A model hook that raises (after registering), a datasets hook that works, a misspelt hook.
CRASHY = '''
from ndcore.plugin_api import hookimpl

def build(target, request):
    raise RuntimeError("x")

@hookimpl
def ndcore_register_models(register):
    register("crashmodel", build)
    1 / 0

@hookimpl
def ndcore_register_datasets(register):
    register("crashdata", build, description="crashy data")

@hookimpl
def ndcore_register_model(register):
    pass
'''

BLOBS = "dataset adapter 'blobs' (plugin ndtest, ndcore-testkit 0.1.0)"
FAULTS = ("NDTEST_BAD_LABEL", "NDTEST_REPEAT", "NDTEST_BAD_ANNOTATED", "NDTEST_READ_RAISES",
          "NDTEST_IMPORT_MARKER", "NDCORE_DEBUG")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return make_plugin(tmp_path_factory.mktemp("site"), "ndcore-testkit", "ndtest_plugin",
                       TESTKIT, entry_points={"ndcore": {"ndtest": "ndtest_plugin"}})


@pytest.fixture(scope="module")
def clash_site(tmp_path_factory):
    where = tmp_path_factory.mktemp("clash")
    make_plugin(where, "evil-plugin", "evil_plugin", EVIL,
                entry_points={"ndcore": {"torchvision": "evil_plugin"}})
    make_plugin(where, "crashy", "crashy_plugin", CRASHY)
    return where


@pytest.fixture
def plugins(site, monkeypatch):
    """The testkit plugin discovered in process; no fault switched on."""
    for name in FAULTS:
        monkeypatch.delenv(name, raising=False)
    with use_plugins(site):
        yield


def cli(capsys, *args):
    """``ndcore ARGS`` in process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_cli(*args, sites=(), **env):
    """``python -m ndcore ARGS`` in a subprocess that finds the plugins in ``sites``."""
    clean = {k: v for k, v in plugin_env(*sites).items() if k not in FAULTS}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "ndcore", *map(str, args)],
                          capture_output=True, text=True, env=clean, timeout=300)


def the_error(out: str) -> str:
    """The one 'error:' line of a command's output (no traceback, nothing else wrapped)."""
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out
    return errors[0][len("error: "):]


def dissect(out, dataset="blobs:n=40", *extra, model="tiny"):
    return ("dissect", "--model", model, "--layers", "2", "--dataset", dataset, "--out", out,
            "--workers", "0", "--batch-size", "8", "--quiet", *extra)


def config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def only_config_left(run: Path) -> None:
    """A failed run: config.json marked incomplete, no result file half-written (only the
    engine's resumable state may be there: the checkpoint folder)."""
    assert set(p.name for p in run.iterdir()) <= {"config.json", "checkpoint"}
    assert config(run)["complete"] is False


# -- 1. --max-images, --categories, --resize: applied by the engine ---------------------------

def test_max_images_and_categories_apply_to_a_plugin_source(plugins, capsys, tmp_path):
    run = tmp_path / "run"
    rc, out, _ = cli(capsys, *dissect(run, "blobs:n=200", "--max-images", "50",
                                      "--categories", "object,color", "--no-report"))
    assert rc == 0, out
    cfg = config(run)
    assert cfg["complete"] is True
    assert cfg["dataset"]["images"] == 50 and cfg["options"]["max_images"] == 50
    assert cfg["dataset"]["categories"] == ["object", "color"]
    assert json.loads((run / "summary.json").read_text())["2"]["images"] == 50  # counted
    assert json.loads((run / "vocabulary.json").read_text())["categories"] == ["object", "color"]
    with np.load(run / "2" / "topk.npz") as top:
        assert top["indices"].max() < 50
    with open(run / "2" / "tally.csv") as f:
        header = next(csv.reader(f))
    assert {h.split("-")[0] for h in header[4:]} == {"object", "color"}
    assert len(json.loads((run / "images.json").read_text())) == 50


def test_unknown_category_is_one_line(plugins, capsys, tmp_path):
    rc, out, _ = cli(capsys, *dissect(tmp_path / "run", "blobs:n=20", "--categories", "objet"))
    assert rc == 2
    assert the_error(out) == (
        f"{BLOBS}: --categories 'objet' is not a category of this dataset (did you mean: "
        "object?); its categories are object, part, color, texture")
    assert not (tmp_path / "run").exists()


def _vocab():
    return Vocabulary(["object", "part", "color"], ["-", "square", "disc", "red"],
                      [[], ["object"], ["object", "part"], ["color"]], np.array([-1, 0, 0, 2]))


class Memory(ProbeSource):
    """An in-process source of given items (view and check tests)."""

    def __init__(self, items, vocab=None):
        self.items = items
        self.vocabulary = vocab or _vocab()
        self.info = ProbeSourceInfo(spec="memory", kind="memory", size=len(items))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        if isinstance(item, Exception):
            raise item
        return item


def _item(index=0, planes=None, cats=(0, 1, -1), image_labels=(), label_cats=None,
          annotated=(True, True, False), image=None, label_size=(4, 4)):
    if planes is None:
        planes = np.zeros((len(cats), *label_size), np.int32)
    return ProbeItem(index=index, image=np.zeros((8, 8, 3), np.uint8) if image is None else image,
                     planes=planes, plane_categories=list(cats) if cats is not None else None,
                     image_labels=list(image_labels), label_size=label_size,
                     image_label_categories=label_cats, annotated=np.array(annotated))


def test_view_restricts_categories_of_any_source():
    planes = np.zeros((3, 4, 4), np.int32)
    planes[0, 0, 0] = 1      # square, object plane
    planes[1, 0, 1] = 2      # disc, part plane
    planes[2, 1, 0] = 3      # red, on a plane of unknown category: not a part -> removed
    planes[2, 1, 1] = 2      # disc, unknown category: a part too -> kept
    item = _item(planes=planes, image_labels=[3, 2], label_cats=[2, -1])
    view = SourceView(Memory([item]), categories=["part"])
    got = view[0]
    assert view.vocabulary.categories == ["part"]
    assert got.plane_categories == [0, -1]  # the object plane is dropped, part is now 0
    assert got.planes.shape == (2, 4, 4)
    assert got.planes[0, 0, 1] == 2 and got.planes[1, 1, 1] == 2 and got.planes[1, 1, 0] == 0
    assert list(got.image_labels) == [2] and got.image_label_categories == [-1]
    assert got.annotated.tolist() == [True]
    assert ItemValidator(view.vocabulary, view.origin)(got) is None
    # a source that already restricted itself is left alone
    same = SourceView(Memory([item]), categories=["color", "object", "part"])
    assert same[0] is item and same.vocabulary is same.source.vocabulary


def test_view_max_images_and_resize_before_batching():
    items = [_item(i, image=np.full((8 + 2 * i, 6, 3), 10 * i, np.uint8)) for i in range(5)]
    view = SourceView(Memory(items), max_images=3, resize=(5, 7))
    assert len(view) == 3 and view.info.size == 3
    for i in range(3):
        image = view[i].image
        assert image.shape == (5, 7, 3) and image.dtype == np.uint8
        assert (image == 10 * i).all()  # a flat image stays flat
        assert view[i].label_size == (4, 4)  # labels keep the source's size
    with pytest.raises(IndexError):
        view.read(3)


def test_mixed_sizes_name_the_image_whatever_the_batch(plugins, capsys, tmp_path):
    expected = (f"{BLOBS}: image 1: image is 40x48 but image 0 is 32x32; images of different "
                "sizes need --resize N or HxW (the engine then resizes each image before "
                "batching)")
    for batch in ("1", "8"):
        run = tmp_path / f"b{batch}"
        rc, out, _ = cli(capsys, *dissect(run, "blobs:n=20,mixed=1", "--batch-size", batch))
        assert rc == 2 and the_error(out) == expected
        only_config_left(run)
    rc, out, _ = cli(capsys, *dissect(tmp_path / "resized", "blobs:n=20,mixed=1",
                                      "--resize", "32", "--no-report"))
    assert rc == 0, out
    assert config(tmp_path / "resized")["model"]["preprocess"]["resize"] == [32, 32]


# -- 2. name clashes never take the tool down -------------------------------------------------

def test_clashes_and_broken_hooks_are_listed_not_fatal(site, clash_site):
    res = run_cli("plugins", sites=[site, clash_site])
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert ("warning: plugin evil-plugin:torchvision (evil-plugin 0.1.0): model adapter "
            "'torchvision' clashes with ndcore's built-in 'torchvision', which keeps the name: "
            "use evil-plugin:torchvision:TARGET, or `pip uninstall evil-plugin`") in lines
    assert ("warning: plugin evil-plugin:torchvision (evil-plugin 0.1.0): its entry-point name "
            "'torchvision' is taken by ndcore 0.1.0; listed as evil-plugin:torchvision") in lines
    assert ("warning: plugin ndtest (ndcore-testkit 0.1.0): dataset adapter 'blobs' is also "
            "registered by evil-plugin: use ndcore-testkit:blobs:TARGET, or uninstall one of "
            "them") in lines
    assert ("failed: plugin crashy_plugin (crashy 0.1.0): ndcore_register_models raised "
            "ZeroDivisionError: division by zero") in lines
    assert "is not used" not in res.stderr  # listed once, in the table's problem lines
    assert ("warning: plugin crashy_plugin (crashy 0.1.0): hook ndcore_register_model is not "
            "an ndcore hook and is never called (did you mean: ndcore_register_models, "
            "ndcore_register_datasets, ndcore_register_segmenters?)") in lines
    table = " ".join(res.stdout.split())
    for description in ("testkit: a tiny CNN, tiny:WIDTH", "crashy data",
                        "torchvision models: torchvision:<name>", "evil torchvision"):
        assert description in table
    assert "crashmodel" not in table  # registered by the hook that raised: not half-registered
    # every other command still works, and built-ins keep their names
    res = run_cli("layers", "torchvision:resnet18", sites=[site, clash_site])
    assert res.returncode == 0 and "torchvision:resnet18" in res.stdout, res.stdout
    failures = [line for line in res.stderr.splitlines() if line.startswith("plugin ")]
    assert failures == [  # not silent either: one line when the hook fails
        "plugin crashy_plugin (crashy 0.1.0) is not used: ndcore_register_models raised "
        "ZeroDivisionError: division by zero (`ndcore plugins` lists the plugins)"]
    assert run_cli("info", sites=[site, clash_site]).returncode == 0
    res = run_cli("--traceback", "plugins", sites=[site, clash_site])
    assert "ZeroDivisionError" in res.stderr and "crashy_plugin.py" in res.stderr


def test_clashing_adapters_are_reachable_by_distribution(site, clash_site):
    with use_plugins(site, clash_site):
        from ndcore.plugins import get_plugin_manager

        pm = get_plugin_manager()
        reg, target = pm.find("model", "torchvision:resnet18")
        assert reg.builtin and reg.distribution == "ndcore" and target == "resnet18"
        reg, target = pm.find("model", "evil-plugin:torchvision:resnet18")
        assert reg.distribution == "evil-plugin" and target == "resnet18"
        reg, target = pm.find("dataset", "ndcore-testkit:blobs:n=5")
        assert reg.plugin == "ndtest" and target == "n=5"
        with pytest.raises(PluginError) as err:
            pm.find("dataset", "blobs:n=5")
        assert str(err.value) == (
            "dataset adapter 'blobs' is registered by several plugins (ndtest from "
            "ndcore-testkit, evil-plugin:torchvision from evil-plugin); say which: "
            "ndcore-testkit:blobs:n=5 or evil-plugin:blobs:n=5")
        source, _ = pm.resolve("dataset", "ndcore-testkit:blobs:n=5", None)
        assert source.info.spec == "ndcore-testkit:blobs:n=5,mixed=0"  # rebuilds the same
        with pytest.raises(PluginError, match="no model adapter 'crashmodel'.*plugins that "
                                              "failed to load: crashy_plugin"):
            pm.find("model", "crashmodel")
        assert pm.find("dataset", "crashdata")[0].plugin == "crashy_plugin"


# -- 3. factories that raise or return the wrong type ------------------------------------------

def test_factory_errors_are_one_line_naming_the_plugin(plugins, capsys, tmp_path):
    rc, out, err = cli(capsys, *dissect(tmp_path / "a", model="raises:x"))
    assert rc == 2 and not err
    assert the_error(out) == (
        "model adapter 'raises' (plugin ndtest, ndcore-testkit 0.1.0): model spec 'raises:x': "
        "the factory raised ValueError: boom (--traceback shows where)")
    rc, out, _ = cli(capsys, *dissect(tmp_path / "a", model="wrongtype"))
    assert rc == 2
    assert the_error(out) == (
        "model adapter 'wrongtype' (plugin ndtest, ndcore-testkit 0.1.0): model spec "
        "'wrongtype': the factory returned Conv2d, not a ndcore.plugin_api.ModelAdapter (wrap "
        "it: ModelAdapter(spec, module))")
    assert not (tmp_path / "a").exists()
    rc, out, err = cli(capsys, *dissect(tmp_path / "a", model="raises:x"), "--traceback")
    assert rc == 2 and "Traceback" in err and "ValueError: boom" in err
    assert "ndtest_plugin.py" in err and "in build_raises" in err  # the plugin's own frame
    assert "the factory raised ValueError: boom" in out


def test_ndcore_debug_shows_tracebacks(site, tmp_path):
    res = run_cli(*dissect(tmp_path / "a", model="raises"), sites=[site], NDCORE_DEBUG="1")
    assert res.returncode == 2 and "in build_raises" in res.stderr
    res = run_cli(*dissect(tmp_path / "a", model="raises"), sites=[site])
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout


# -- 4. items are validated before they reach the op -------------------------------------------

@pytest.mark.parametrize("fault, message", [
    ("NDTEST_BAD_LABEL", "image 7: label 9 is not in the vocabulary (label numbers are 1-4, "
                         "0 = no label): plane 0, pixel (y=3, x=5)"),
    ("NDTEST_REPEAT", "image 7: label 1 appears twice at pixel (y=7, x=2), in planes 0 and 3 "
                      "(category 'object'); a label may appear once per pixel and category "
                      "(plugin_api.remove_repeated_labels drops repeats)"),
    ("NDTEST_BAD_ANNOTATED", "image 7: annotated has shape (2,), expected (4,): one bool per "
                             "category (object, part, color, texture)"),
    ("NDTEST_READ_RAISES", "image 7: read raised KeyError: 'no such blob'"),
])
def test_bad_items_stop_the_run_in_one_line(plugins, site, capsys, tmp_path, monkeypatch,
                                            fault, message):
    run = tmp_path / "run"
    if fault == "NDTEST_BAD_LABEL":  # the real command, checks in DataLoader worker processes
        res = run_cli(*dissect(run, "blobs:n=40", "--workers", "2"), sites=[site],
                      **{fault: "7"})
        rc, out = res.returncode, res.stdout
        assert "Traceback" not in res.stderr
    else:
        monkeypatch.setenv(fault, "7")
        rc, out, _ = cli(capsys, *dissect(run, "blobs:n=40"))
    assert rc == 2
    assert the_error(out) == f"{BLOBS}: {message}"
    only_config_left(run)


def test_failed_run_continues_with_the_same_command(plugins, capsys, tmp_path, monkeypatch):
    run = tmp_path / "run"
    command = dissect(run, "blobs:n=40", "--no-report")
    monkeypatch.setenv("NDTEST_BAD_LABEL", "30")
    rc, out, _ = cli(capsys, *command)
    assert rc == 2 and "image 30: label 9" in the_error(out)
    only_config_left(run)
    monkeypatch.delenv("NDTEST_BAD_LABEL")  # the plugin is fixed; the command is the same
    rc, out, _ = cli(capsys, *command)
    assert rc == 0, out
    assert config(run)["complete"] is True and (run / "2" / "tally.csv").is_file()
    # another run into the same directory is refused, with the way out
    rc, out, _ = cli(capsys, *command, "--quantile", "0.01")
    assert rc == 2
    assert the_error(out) == (
        f"--out {run}: holds a different run (it differs in options.quantile: 0.005 there, "
        "0.01 now); choose another --out, or give --overwrite to replace it")
    assert config(run)["complete"] is True  # untouched
    rc, out, _ = cli(capsys, *command, "--quantile", "0.01", "--overwrite")
    assert rc == 0 and config(run)["options"]["quantile"] == 0.01


def test_a_different_unfinished_run_says_so(plugins, capsys, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("NDTEST_BAD_LABEL", "3")
    assert cli(capsys, *dissect(run, "blobs:n=40"))[0] == 2
    monkeypatch.delenv("NDTEST_BAD_LABEL")
    rc, out, _ = cli(capsys, *dissect(run, "blobs:n=40", "--max-images", "20"))
    assert rc == 2
    assert the_error(out) == (
        f"--out {run}: holds a different, unfinished run (it differs in dataset.images: 40 "
        "there, 20 now); choose another --out, or give --overwrite to replace it")
    only_config_left(run)


def test_item_validator_rules():
    check = ItemValidator(_vocab(), "source S")
    assert check(_item()) is None
    planes = np.zeros((2, 4, 4), np.int32)
    planes[0, 1, 2] = planes[1, 1, 2] = 2  # disc as an object and as a part: fine
    assert check(_item(planes=planes, cats=[0, 1])) is None
    cases = [
        (dict(planes=np.full((1, 4, 4), -1, np.int32), cats=[0]),
         "label -1 is not in the vocabulary (label numbers are 1-3, 0 = no label): plane 0, "
         "pixel (y=0, x=0)"),
        (dict(planes=planes, cats=[0, 0]),
         "label 2 appears twice at pixel (y=1, x=2), in planes 0 and 1 (category 'object'); a "
         "label may appear once per pixel and category (plugin_api.remove_repeated_labels "
         "drops repeats)"),
        (dict(planes=planes, cats=[-1, None]),
         "label 2 appears twice at pixel (y=1, x=2), in planes 0 and 1 (unknown category); a "
         "label may appear once per pixel and category (plugin_api.remove_repeated_labels "
         "drops repeats)"),
        (dict(planes=planes.astype(np.float32), cats=[0, 1]),
         "planes has dtype float32, not an integer type"),
        (dict(planes=planes[:, :3], cats=[0, 1]),
         "planes has shape (2, 3, 4), expected [P, 4, 4] (label_size (4, 4))"),
        (dict(planes=planes, cats=[0]), "plane_categories has 1 values for 2 plane(s)"),
        (dict(planes=planes, cats=[0, 3]),
         "plane_categories[1] is 3; it must be -1/None (unknown) or a category index 0-2 "
         "(object, part, color)"),
        (dict(image_labels=[4]), "image-level label 4 is not in the vocabulary (label numbers "
                                 "are 1-3, 0 = no label)"),
        (dict(image_labels=[3], label_cats=[2, 2]),
         "image_label_categories has 2 values for 1 image-level label(s)"),
        (dict(annotated=(True,)), "annotated has shape (1,), expected (3,): one bool per "
                                  "category (object, part, color)"),
        (dict(image=np.zeros((8, 8, 3), np.float32)),
         "image has dtype float32, not uint8 (RGB values 0-255, [H, W, 3])"),
        (dict(image=np.zeros((8, 8), np.uint8)), "image has shape (8, 8), not [H, W, 3] (RGB)"),
    ]
    for kwargs, problem in cases:
        assert check(_item(**kwargs)) == f"source S: image 0: {problem}", kwargs
    gap = Vocabulary(["object"], ["-", "", "b"], [[], [], ["object"]], np.array([-1, -1, 0]))
    assert ItemValidator(gap, "S")(_item(planes=np.ones((1, 4, 4), np.int32), cats=[0],
                                         annotated=(True,))) == (
        "S: image 0: label 1 is not in the vocabulary (label numbers are 1-2, 0 = no label): "
        "plane 0, pixel (y=0, x=0)")


def test_check_items_and_sources_passed_as_objects():
    from ndcore.api import resolve_dataset
    from ndcore.plugin_api import check_items

    good = Memory([_item(i) for i in range(3)])
    check_items(good)
    bad = Memory([_item(0), _item(5), ValueError("disk on fire")])
    with pytest.raises(DatasetError, match=r"^probe source Memory \(memory\): image 1: the "
                                           r"source returned the item of index 5$"):
        check_items(bad)
    with pytest.raises(DatasetError, match=r"image 2: read raised ValueError: disk on fire$"):
        check_items(bad, indices=[2])
    broken = Memory([_item(0)], vocab=Vocabulary(["object"], ["-", "a"], [[], ["scene"]],
                                                  np.array([-1, 0])))
    with pytest.raises(DatasetError) as err:
        resolve_dataset(broken)
    assert str(err.value) == (
        "probe source Memory (memory): its vocabulary: label 1 ('a') is in category 'scene', "
        "which is not in vocabulary.categories ['object']")


# -- 5. reports of sources without files; no flood of warnings ---------------------------------

def _strip_pixels(run: Path) -> np.ndarray:
    strip = sorted((run / "report" / "2").glob("unit*.jpg"))[0]
    return np.asarray(Image.open(strip).convert("RGB"), dtype=np.float32)


def test_report_of_a_file_less_source_shows_its_images(plugins, capsys, caplog, tmp_path):
    run = tmp_path / "run"
    rc, out, err = cli(capsys, *dissect(run, "blobs:n=40"))
    assert rc == 0, out
    assert "cannot read" not in out + err + caplog.text
    assert json.loads((run / "images.json").read_text()) == [None] * 40
    kept = sorted(int(p.stem) for p in (run / "thumbnails").glob("*.jpg"))
    with np.load(run / "2" / "topk.npz") as top:
        assert kept == sorted(set(top["indices"].ravel().tolist()))
    pixels = _strip_pixels(run)
    assert pixels[..., 1].max() > 150  # the blobs' green band, not a grey mask
    page = re.sub(r"<[^>]+>", "", (run / "report" / "2.html").read_text())
    assert "unit 0 (tally.csv unit 1)" in " ".join(page.split())
    assert "tally.csv numbers them from 1" in " ".join(page.split())


def test_unreadable_images_give_one_summary_line(site, tmp_path):
    run = tmp_path / "run"
    res = run_cli(*dissect(run, "blobs:n=40", "--no-report"), sites=[site])
    assert res.returncode == 0, res.stdout + res.stderr
    for copy in (run / "thumbnails").glob("*.jpg"):
        copy.unlink()
    res = run_cli("report", run, "--quiet")  # without the plugin: the run is enough
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.fullmatch(
        r"report: \d+ top image\(s\) could not be read and are drawn as grey masks \(first: "
        r"image \d+: no image file and no copy kept in the run\)", lines[0]), res.stderr
    assert "could not be read" in (run / "report" / "2.html").read_text()


# -- 7. output directory problems --------------------------------------------------------------

def test_out_that_is_a_file_is_one_line(plugins, capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("mine")
    rc, out, _ = cli(capsys, *dissect(target))
    assert rc == 2 and the_error(out) == f"--out {target}: is a file, not a directory"
    rc, out, _ = cli(capsys, *dissect(target / "sub"))
    assert rc == 2 and the_error(out) == f"--out {target / 'sub'}: cannot write (Not a directory)"
    assert target.read_text() == "mine"


# -- hooks, help, discovery ---------------------------------------------------------------------

def test_help_lists_adapters_and_plugins_load_only_when_needed(site, tmp_path):
    marker = tmp_path / "imported"
    res = run_cli("dissect", "--help", sites=[site], NDTEST_IMPORT_MARKER=str(marker))
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "tiny (testkit: a tiny CNN, tiny:WIDTH)" in text
    assert "blobs (testkit: in-memory blobs, blobs:n=N[,mixed=1])" in text
    assert "torchvision (torchvision models: torchvision:<name>)" in text
    assert marker.read_text() == "imported\n"
    marker.unlink()
    for args in (["--help"], ["summary", tmp_path / "none"], ["report", "--help"]):
        run_cli(*args, sites=[site], NDTEST_IMPORT_MARKER=str(marker))
        assert not marker.exists(), args


class Recorder:
    calls: list = []


def _make(tag):
    from torch import nn

    from ndcore.plugin_api import ModelAdapter

    return lambda target, request: ModelAdapter(f"{tag}:{target}", nn.Identity())


class Early:
    @hookimpl(tryfirst=True)
    def ndcore_register_models(self, register):
        Recorder.calls.append("early")
        register("early", _make("early"), description="first")


class Late:
    @hookimpl(trylast=True)
    def ndcore_register_models(self, register):
        Recorder.calls.append("late")
        register("late", _make("late"))


class Wrapper:
    @hookimpl(wrapper=True)
    def ndcore_register_models(self, register):
        Recorder.calls.append("wrapper in")
        result = yield
        Recorder.calls.append("wrapper out")
        return result


class Raising:
    @hookimpl
    def ndcore_register_models(self, register):
        register("lost", _make("lost"))
        raise RuntimeError("hook broke")

    @hookimpl
    def ndcore_register_datasets(self, register):
        register("kept", lambda target, request: Memory([_item()]))


def test_hooks_go_through_pluggy_once_per_process():
    Recorder.calls = []
    pm = PluginManager(load_entry_points=False)
    pm.register(Late(), name="late")
    pm.register(Wrapper(), name="wrapper")
    pm.register(Early(), name="early")
    pm.register(Raising(), name="raising")
    for _ in range(3):
        assert pm.resolve("model", "early:x", None)[0].spec == "early:x"
        assert pm.resolve("model", "late", None)[0].spec == "late:"
        pm.plugin_infos()
    # tryfirst, then the others (raising: it raises, so the call stops there), then trylast;
    # the call is made again without the plugin that raised, and never after that
    assert Recorder.calls == ["wrapper in", "early",
                              "wrapper in", "early", "late", "wrapper out"]
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["early"].models == ["early"] and infos["late"].models == ["late"]
    assert infos["raising"].error == "ndcore_register_models raised RuntimeError: hook broke"
    assert infos["raising"].models == [] and infos["raising"].datasets == ["kept"]
    assert pm.find("model", "early")[0].description == "first"
    assert pm.resolve("dataset", "kept:y", None)[0].info.spec == "memory"
    pm.unregister("early")  # the tables are rebuilt without it
    with pytest.raises(PluginError, match="no model adapter 'early'"):
        pm.resolve("model", "early", None)


def test_register_refuses_bad_names_and_says_so():
    class Bad:
        @hookimpl
        def ndcore_register_models(self, register):
            register("has:colon", _make("x"))
            register("fine", "not callable")
            register("ok", _make("ok"))

    pm = PluginManager(load_entry_points=False)
    pm.register(Bad(), name="bad")
    assert [r.name for r in pm.adapters("model")] == ["ok"]
    assert pm.infos["bad"].notes == [
        "register('has:colon', ...): a name is letters, digits and _ . + - (no ':' or spaces)",
        "register('fine', ...): the factory 'not callable' is not callable"]


# -- the reference and the walk-through ---------------------------------------------------------

DOCS = REPO / "docs" / "plugins.md"


def test_reference_documents_every_public_name_and_field():
    import dataclasses

    import ndcore.plugin_api as api
    from ndcore.plugins import ADAPTER_KINDS

    text = DOCS.read_text()
    for name in api.__all__:
        assert f"`{name}" in text or name in text, name
    for kind in ADAPTER_KINDS.values():
        assert f"`{kind.hook}(register)`" in text
    for cls in (api.ProbeItem, api.ModelAdapter, api.Preprocess, api.Vocabulary,
                api.ProbeSourceInfo, api.DatasetRequest, api.ModelRequest):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name}"
    assert "(docs/plugins.md)" in (REPO / "README.md").read_text()


def test_walk_through_plugin_works_as_written(capsys, tmp_path, monkeypatch):
    code = re.search(r"```python\n# file: ndcore_shapes.py\n(.*?)```", DOCS.read_text(),
                     re.S).group(1)
    toml = re.search(r"\[project.entry-points.ndcore\]\n(\w+) = \"(\w+)\"", DOCS.read_text())
    site = make_plugin(tmp_path / "site", "ndcore-shapes", toml.group(2), code,
                       entry_points={"ndcore": {toml.group(1): toml.group(2)}})
    with use_plugins(site):
        import ndcore_shapes
        from ndcore.plugin_api import check_items

        check_items(ndcore_shapes.Squares(20))
        run = tmp_path / "run"
        rc, out, _ = cli(capsys, "dissect", "--model", "smallcnn:8", "--random-init",
                         "--layers", "2", "--dataset", "squares:200", "--out", run,
                         "--max-images", "100", "--workers", "0", "--quiet")
        assert rc == 0, out
        assert config(run)["dataset"]["images"] == 100
        assert (run / "thumbnails").is_dir() and (run / "report" / "index.html").is_file()
        rc, out, _ = cli(capsys, "plugins")
        assert "ndcore-shapes" in out and rc == 0
