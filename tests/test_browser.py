"""The report in a real browser: headless Chromium renders it from file:// and runs its script.

Sorting and filtering are driven through the URL fragment (#sort=iou-asc, #q=disk, ...), which
the page's script reads on load; --dump-dom returns the DOM after the script ran.
"""

import re
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from test_report import EVIL, make_run
from ndcore.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]


# find_chromium and the chromium fixture live in conftest.py (every browser test's)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    run = make_run(base, layers=("units",))
    write_report(run, progress=False)
    return run / "report"


def browse(chromium, tmp_path, url, *extra):
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Cards(HTMLParser):
    """The unit cards of a dumped DOM, in document order."""

    def __init__(self):
        super().__init__()
        self.cards, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.scripts += tag == "script"
        if tag == "article":
            self.cards.append({"unit": int(attrs["data-unit"]), "label": attrs["data-label"],
                               "iou": float(attrs["data-iou"]), "hidden": "hidden" in attrs})


def cards(dom):
    parser = Cards()
    parser.feed(dom)
    return parser


def test_sort_and_filter_from_the_url(chromium, report, tmp_path):
    url = (report / "units.html").as_uri()
    dom = browse(chromium, tmp_path, url, "--dump-dom")
    assert 'data-ready="1"' in dom  # the script ran
    default = cards(dom).cards
    assert len(default) == 3 and not any(c["hidden"] for c in default)
    assert [c["iou"] for c in default] == sorted((c["iou"] for c in default), reverse=True)
    assert "3 of 3 units shown" in dom

    ascending = cards(browse(chromium, tmp_path, url + "#sort=iou-asc", "--dump-dom")).cards
    assert [c["unit"] for c in ascending] == [c["unit"] for c in reversed(default)]

    dom = browse(chromium, tmp_path, url + "#q=disk", "--dump-dom")
    visible = [c["label"] for c in cards(dom).cards if not c["hidden"]]
    assert visible == ["disk"] and "1 of 3 units shown" in dom

    by_unit = cards(browse(chromium, tmp_path, url + "#sort=unit&cat=object", "--dump-dom")).cards
    assert [c["unit"] for c in by_unit] == [0, 1, 2]
    assert [c["hidden"] for c in by_unit] == [False, False, True]  # unit 2 is the scene unit


def test_markup_label_renders_as_text(chromium, tmp_path_factory, tmp_path):
    from test_planted import LABELS

    run = make_run(tmp_path_factory.mktemp("evil-browser"),
                   [(1, EVIL, {"object": 1.0})] + list(LABELS[1:]), layers=("units",))
    write_report(run, progress=False)
    dom = browse(chromium, tmp_path, (run / "report" / "units.html").as_uri(), "--dump-dom")
    parsed = cards(dom)
    assert parsed.scripts == 1  # the page's own script only: the label made no element
    assert EVIL in [c["label"] for c in parsed.cards]  # ...and is there as text
    assert re.search(r'class="label">&lt;script&gt;alert\(1\)&lt;/script&gt;<', dom)


def test_screenshot(chromium, report, tmp_path):
    shot = tmp_path / "layer.png"
    browse(chromium, tmp_path, (report / "units.html").as_uri(),
           f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        # the page rendered: not a blank white screenshot
        assert len(im.convert("L").getcolors(1 << 16)) > 10
