"""The results viewer: HTML report, comparison of runs, and per-image explanations."""

import argparse
import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from broden_fixture import write_broden
from test_planted import CATS, LABELS, make_images
from ndcore.api import run_dissection
from ndcore.data.broden import BrodenDataset
from ndcore.errors import LayerError, NdcoreError, OutputError
from ndcore.report import compare_runs, explain_image, write_report
from ndcore.cli.report import register as register_commands
from ndcore.report.common import layer_slugs
from ndcore.results import DissectionResult

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>"
ODD_LAYER = "<i>odd&\"layer'"  # a module name full of markup (no '/' or '.': torch forbids '.')

MODEL_SOURCE = '''
from torch import nn

class Planted(nn.Module):
    """Unit k = channel k of the input, average-pooled by 2 (see test_planted.py)."""
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.units = nn.Identity()
        self.add_module(ODD, nn.Identity())

    def forward(self, x):
        return getattr(self, ODD)(self.units(self.pool(x)))

def build():
    return Planted()
'''


def ensure_python_plugin() -> None:
    """The `python:` model spec, registered in-process when ndcore is not pip-installed."""
    from ndcore.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if "python" in pm.infos and not pm.infos["python"].error:
        return
    sys.path.insert(0, str(ROOT / "plugins"))
    from ndcore_builtins import python_models

    pm.register(python_models, "python")


def make_run(base: Path, labels=LABELS, layers=("pool", "units", ODD_LAYER), n_images=48) -> Path:
    """A finished run of the planted model (rebuildable from config.json) on a tiny dataset."""
    ensure_python_plugin()
    model = base / "planted_model.py"
    model.write_text(f"ODD = {ODD_LAYER!r}\n" + MODEL_SOURCE)
    data = write_broden(base / "data", CATS, labels, make_images(n_images))
    out = base / "run"
    run_dissection(f"python:{model}:build", list(layers), BrodenDataset(data), out,
                   normalize="none", quantile=0.3, topk=5, batch_size=16)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory):
    labels = [(1, EVIL, {"object": 1.0})] + list(LABELS[1:])
    return make_run(tmp_path_factory.mktemp("evil"), labels, layers=("units", ODD_LAYER))


class Refs(HTMLParser):
    """Collects tags and the src/href attributes of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.cards = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        for key in ("src", "href"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if tag == "article" and "card" in attrs.get("class", ""):
            self.cards.append(attrs)


def parse(path: Path) -> Refs:
    p = Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def headline(page: Path) -> str:
    text = re.search(r'<p class="headline" id="headline">(.*?)</p>', page.read_text(), re.S)
    return " ".join(text.group(1).split())


def test_layer_slugs_are_safe_and_distinct():
    slugs = layer_slugs(["layer4.1", "layer4_1", "a/../b", "", "index", EVIL])
    assert len(set(slugs.values())) == 6
    for slug in slugs.values():
        assert re.fullmatch(r"[A-Za-z0-9_-]+", slug)
    assert slugs["index"] != "index"


def test_report_pages_cards_and_numbers(run):
    index = write_report(run, progress=False)
    assert index == run / "report" / "index.html"
    result = DissectionResult.load(run)
    slugs = layer_slugs(list(result.layers))
    index_text = index.read_text()
    for name, lr in result.layers.items():
        page = run / "report" / f"{slugs[name]}.html"
        assert f'href="{slugs[name]}.html"' in index_text
        s = lr.summary()
        assert headline(page) == (f"{s['detectors']}/{s['units']} units covering "
                                  f"{s['unique_detectors']} concepts with IoU &gt; {lr.cutoff:g}")
        cards = parse(page).cards
        assert sorted(int(c["data-unit"]) for c in cards) == list(range(lr.num_units))
        for c in cards:
            u = lr.units[int(c["data-unit"])]
            assert c["data-label"] == u.label and c["data-category"] == u.category
            assert float(c["data-iou"]) == pytest.approx(u.iou, abs=1e-6)
            assert c["data-detector"] == ("1" if u.iou > lr.cutoff else "0")
            assert ("below" in c["class"]) == (u.iou <= lr.cutoff)
        # default order: IoU, high first
        ious = [float(c["data-iou"]) for c in cards]
        assert ious == sorted(ious, reverse=True)
        row = re.search(rf'<tr data-layer="{re.escape(str(escape(name)))}">(.*?)</tr>', index_text, re.S).group(1)
        numbers = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)]
        assert numbers == [s["units"], s["detectors"], s["unique_detectors"]]
    assert "units" in result.layers and result["units"].summary()["detectors"] == 3


def test_every_reference_resolves_and_nothing_is_fetched(run):
    write_report(run, progress=False, topk=3)
    report = run / "report"
    pages = sorted(report.glob("*.html"))
    assert len(pages) == 1 + 3  # index + one page per layer
    strips = 0
    for page in pages:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text
        assert "url(" not in text and "@import" not in text  # no CSS fetches either
        parsed = parse(page)
        for tag, attrs in parsed.tags:
            assert tag != "link", "no external stylesheets"
            assert not (tag == "script" and "src" in attrs), "no external scripts"
        for ref in parsed.refs:
            assert not re.match(r"[a-z]+:", ref), ref  # relative only: no scheme, no data: URLs
            assert (report / ref.split("#")[0]).is_file(), ref
        for tag, attrs in parsed.tags:
            if tag == "img":
                strips += 1
                with Image.open(report / attrs["src"]) as im:
                    assert im.size == (int(attrs["width"]), int(attrs["height"]))
                    assert im.height == 96 and im.width == 3 * 96 + 2 * 2  # 3 tiles and 2 gaps
    assert strips == 3 * 3


def test_strip_shows_the_unit_mask(run):
    """Unit 0 is the red channel: inside a strip, red pixels are kept, the rest darkened."""
    write_report(run, progress=False, topk=5)
    strip = np.asarray(Image.open(run / "report" / "units" / "unit0000.jpg")).astype(int)
    first = strip[:, :96]
    red = first[..., 0] > 200
    assert red.any()
    assert first[~red].mean() < 0.3 * 255  # the background (black, or darkened) stays dark


def test_regenerate_with_another_cutoff(run):
    write_report(run, progress=False)
    page = run / "report" / "units.html"
    before = headline(page)
    strip = run / "report" / "units" / "unit0000.jpg"
    mtime = strip.stat().st_mtime_ns
    write_report(run, cutoff=0.55, progress=False)
    after = headline(page)
    s = DissectionResult.load(run, cutoff=0.55)["units"].summary()
    assert after == (f"{s['detectors']}/{s['units']} units covering {s['unique_detectors']} "
                     "concepts with IoU &gt; 0.55")
    assert after != before
    assert strip.stat().st_mtime_ns == mtime  # strips do not depend on the cut-off: reused
    below = [c for c in parse(page).cards if c["data-detector"] == "0"]
    assert len(below) == s["units"] - s["detectors"] and all("below" in c["class"] for c in below)


def test_no_detector_and_category_subset(run):
    write_report(run, cutoff=0.99, categories=["object"], progress=False)
    page = (run / "report" / "units.html").read_text()
    assert 'id="nochart"' in page and "<svg" not in page
    assert headline(run / "report" / "units.html").startswith("0/3 units covering 0 concepts")
    assert '<option value="object">' in page and '<option value="scene">' not in page
    with pytest.raises(NdcoreError, match="no category"):
        write_report(run, categories=["nope"], progress=False)
    with pytest.raises(NdcoreError):
        write_report(run, topk=0, progress=False)


def test_missing_images_and_bad_run_dir(run, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report"))
    paths = json.loads((copy / "images.json").read_text())
    (copy / "images.json").write_text(json.dumps([p + ".gone" for p in paths]))
    write_report(copy, progress=False)
    assert "could not be read" in (copy / "report" / "units.html").read_text()
    with pytest.raises(OutputError):
        write_report(tmp_path / "nothing", progress=False)


def test_markup_in_labels_and_layer_names_is_escaped(evil_run):
    write_report(evil_run, progress=False)
    pages = list((evil_run / "report").glob("*.html"))
    assert len(pages) == 3
    found = False
    for page in pages:
        text = page.read_text()
        assert EVIL not in text and "<i>odd" not in text
        assert text.count("<script") <= 1  # only the page's own script
        found |= "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert found
    index = (evil_run / "report" / "index.html").read_text()
    assert "&lt;i&gt;odd&amp;" in index
    # file names come from sanitised layer names only
    for path in (evil_run / "report").rglob("*"):
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", path.name), path.name


def test_compare_runs(run, evil_run, tmp_path):
    out = tmp_path / "cmp" / "runs.svg"
    rows, svg = compare_runs([run, evil_run], out=out, cutoff=0.04)
    assert svg == out and out.is_file()
    ET.parse(out)  # well-formed XML (names are escaped)
    assert len(rows) == 3 + 2
    expected = [(run, layer) for layer in ("pool", "units", ODD_LAYER)] + \
        [(evil_run, layer) for layer in ("units", ODD_LAYER)]
    for r, (base, layer) in zip(rows, expected):
        assert r["layer"] == layer
        s = DissectionResult.load(base, cutoff=0.04)[layer].summary()
        assert (r["detectors"], r["unique_detectors"]) == (s["detectors"], s["unique_detectors"])
        assert r["categories"]["object"] == s["categories"]["object"]
        assert (r["detectors_fdr"], r["stable_labels"]) == \
            (s.get("detectors_fdr"), s.get("stable_labels"))
    assert rows[0]["run"] != rows[-1]["run"]
    with pytest.raises(NdcoreError):
        compare_runs([])


def test_explain_image(run, tmp_path):
    paths = json.loads((run / "images.json").read_text())
    out = tmp_path / "explained.png"
    png, found = explain_image(run, paths[3], layer="units", top=5, out=out)
    assert png == out
    labels = {label for _, label, _, _, _ in found}
    assert {"square", "disk"} <= labels
    for unit, label, cat, iou, share in found:
        lr = DissectionResult.load(run)["units"]
        assert lr.units[unit].label == label and lr.units[unit].iou == pytest.approx(iou)
        assert 0 < share <= 1
    shares = [f[4] for f in found]
    assert shares == sorted(shares, reverse=True)
    with Image.open(png) as im:
        assert im.width >= 384
    # an image of another size is resized to the probe size; the default output path
    big = tmp_path / "big.png"
    Image.open(paths[3]).resize((80, 80)).save(big)
    png2, found2 = explain_image(run, big, top=1)
    assert png2.is_file() and png2.parent == run / "explain" and len(found2) <= 1
    with pytest.raises(LayerError, match="did you mean"):
        explain_image(run, paths[3], layer="unit")
    with pytest.raises(NdcoreError, match="not found"):
        explain_image(run, tmp_path / "missing.png")


def test_commands(run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers(dest="command"))
    paths = json.loads((run / "images.json").read_text())
    for argv in (["report", str(run), "--cutoff", "0.1", "--topk", "2", "--quiet"],
                 ["report", str(run), "--fdr", "0.2", "--quiet"],
                 ["compare", str(run), str(run), "--out", str(tmp_path / "c.svg")],
                 ["compare", str(run), "--fdr", "0.2", "--out", str(tmp_path / "c2.svg")],
                 ["explain", str(run), paths[0], "--top", "2", "--out", str(tmp_path / "e.png")]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert (tmp_path / "c.svg").is_file() and (tmp_path / "e.png").is_file()
    args = parser.parse_args(["report", str(tmp_path / "none")])
    with pytest.raises(NdcoreError):
        args.func(args)


def test_dissect_help_cites_only_what_ships():
    """docs/ is in the source, not in the installed package: the help says where it is."""
    from ndcore.cli.dissect import register as register_dissect

    parser = argparse.ArgumentParser()
    register_dissect(parser.add_subparsers(dest="command"))
    text = " ".join(parser._subparsers._group_actions[0].choices["dissect"].format_help().split())
    cited = re.findall(r"docs/[\w./-]+", text)
    assert cited  # the help does point to the method notes
    for match in re.finditer(r"docs/[\w./-]+", text):
        assert (ROOT / match.group()).is_file(), match.group()
        assert text[match.end():].startswith(" in the ndcore source"), text[match.start():][:80]


@pytest.mark.browser
def test_strips_fit_their_cards(run, tmp_path, chromium):
    """In a narrow window, a strip scales down within its card: no image cut, no scrollbar."""
    import subprocess

    write_report(run, progress=False, topk=5)  # 5 tiles: 488px, wider than a 500px window's room
    report = tmp_path / "report"
    shutil.copytree(run / "report", report)
    page = report / "units.html"
    # measured in the page, after layout, into an attribute that --dump-dom shows
    probe = """<script>
var bad = 0, strips = 0, narrowest = 1e9;
document.querySelectorAll(".card").forEach(function (card) {
  var img = card.querySelector(".strip img"); if (!img) { return; }
  var strip = img.parentElement, box = card.getBoundingClientRect();
  var r = img.getBoundingClientRect();
  strips += 1; narrowest = Math.min(narrowest, r.width);
  if (r.right > box.right + 0.5 || strip.scrollWidth > strip.clientWidth + 1) { bad += 1; }
});
document.body.setAttribute("data-probe", bad + "/" + strips + "/" + Math.round(narrowest));
</script></body>"""
    page.write_text(page.read_text().replace("</body>", probe))
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                           "--window-size=500,900", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad, strips, narrowest = map(int, re.search(r'data-probe="(\d+)/(\d+)/(\d+)"',
                                                proc.stdout).groups())
    assert strips > 0 and bad == 0, f"{bad} of {strips} strips overflow their card"
    assert narrowest > 200  # scaled to the card's width, not shrunk to nothing
