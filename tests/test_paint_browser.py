"""GANPaint in a real browser: headless Chromium (Debian's package) driven by Selenium through
chromedriver, which sends real mouse events over the DevTools protocol. The test draws a
stroke over a planted generator's red blob, chooses "Remove red", and checks that the
returned image lost red inside the stroke and kept it outside.

Also a script, for the screenshot in the docs:

    python tests/test_paint_browser.py RUN_DIR --seed 7 --concept white --out docs/paint-screenshot.png
"""

import argparse
import base64
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.browser

STAGE = 320  # CSS pixels of the painted image on the page (style.css: --stage)


def find(names, fallback):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return fallback if Path(fallback).exists() else None


def browser_paths():
    """(chromium, chromedriver), each None when missing."""
    return (find(("chromium", "chromium-browser"), "/usr/bin/chromium"),
            find(("chromedriver", "chromium-driver"), "/usr/bin/chromedriver"))


def open_browser(width=1280, height=900):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    # the window size includes no browser chrome in headless mode, but be sure of the viewport
    browser.set_window_size(width, height)
    return browser


def wait(browser, condition, timeout=30, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda b: condition(b),
                                                 message=f"timed out waiting for {what}")


def by_id(browser, name):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, name)


def load(browser, url, seed):
    from selenium.webdriver.common.by import By

    browser.get(url)
    wait(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    field = by_id(browser, "seed")
    field.clear()
    field.send_keys(str(seed))
    by_id(browser, "go-seed").click()
    wait(browser, lambda b: by_id(b, "status").text == f"seed {seed}", what=f"seed {seed}")


def stroke(browser, points, size):
    """Press, move through ``points`` (image pixels) and release, with real mouse events."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = by_id(browser, "mask")
    scale = STAGE / size
    # offsets from the canvas' centre, in CSS pixels (Selenium 4)
    at = [(round((x + 0.5) * scale - STAGE / 2), round((y + 0.5) * scale - STAGE / 2))
          for x, y in points]
    actions = ActionChains(browser, duration=20)
    actions.move_to_element_with_offset(canvas, *at[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(at, at[1:]):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def mask_of(browser, h, w) -> torch.Tensor:
    flat = browser.execute_script("return Array.from(window.ganpaint.mask)")
    return torch.tensor(flat, dtype=torch.bool).view(h, w)


def edit_and_wait(browser, concept, button="remove"):
    from selenium.webdriver.common.by import By

    done = int(by_id(browser, "result").get_attribute("data-edits") or 0)
    browser.find_element(By.CSS_SELECTOR, f'input[data-concept="{concept}"]').click()
    by_id(browser, button).click()
    wait(browser, lambda b: int(by_id(b, "result").get_attribute("data-edits") or 0) > done
         or "error" in (by_id(b, "status").get_attribute("class") or ""), what="the edit")
    status = by_id(browser, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text
    return browser.execute_script("return [window.ganpaint.lastEdit, window.ganpaint.lastImage]")


def pixels(data_url) -> torch.Tensor:
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def blob_seed(run):
    """A seed whose red blob is wide enough to keep red far right of a stroke on its left, and
    that stroke's columns and rows."""
    from ndcore.gan.editing.intervene import generate
    from test_paint import colour

    for seed in range(1000):
        red = colour(generate(run, [0], seed)[0], "red")
        if red.sum() < 60:
            continue
        ys, xs = torch.nonzero(red, as_tuple=True)
        left, top, bottom = int(xs.min()), int(ys.min()), int(ys.max())
        # the stroke covers columns left..left+6 (cells up to (left+6)//4); one cell of
        # bilinear reach beyond those: red must remain right of that
        far = 4 * ((left + 6) // 4 + 2)
        if left >= 4 and 2 <= top and bottom <= 29 and int(red[:, far:].sum()) >= 10:
            return seed, left, top, bottom
    raise AssertionError("no seed with a wide red blob")


# -- the tests --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    chromium, driver = browser_paths()
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver))
               if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing, but CI installs them (make browser): "
                        "install failed?")
        pytest.skip(f"{', '.join(missing)} not installed (make browser)")
    b = open_browser()
    yield b
    b.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from ndcore.paint.server import Painter, start_server
    from test_paint import dissect_planted

    run = dissect_planted(tmp_path_factory.mktemp("paint-browser") / "run")
    painter = Painter(run, "units")
    url, stop = start_server(painter)
    yield url, painter
    stop()


def test_remove_red_inside_the_stroke_only(browser, page, tmp_path):
    from ndcore.gan.editing.edit_file import load_edit, render
    from ndcore.gan.editing.edits import cells_of
    from ndcore.gan.editing.intervene import generate
    from run_fixture import ndcore as run_ndcore
    from test_paint import colour

    url, painter = page
    seed, left, top, bottom = blob_seed(painter.run)
    load(browser, url, seed)
    before = generate(painter.run, [0], seed)[0]
    red = colour(before, "red")
    # down and up the left part of the blob (brush radius 2 px, the default for 32 px)
    points = [(left + 2, y) for y in range(top, bottom + 1, 3)]
    points += [(left + 4, y) for y in range(bottom, top - 1, -3)]
    stroke(browser, points, 32)
    mask = mask_of(browser, 32, 32)
    assert all(mask[y, x] for x, y in points)  # the mouse painted where it went
    assert not mask[:, left + 7:].any() and not mask[:, :left].any()  # and nowhere else

    edit, image = edit_and_wait(browser, "red")
    after = pixels(image)
    assert torch.equal(pixels(browser.execute_script(
        "return document.getElementById('result').src")), after)
    assert edit["mode"] == "ablate" and edit["concept"] == "red" and edit["units"] == [0]
    spec = load_edit(edit, painter.run, (32, 32))
    assert torch.equal(spec.region, mask)  # the page sent the mask it showed
    # inside the stroke: red is gone (but where unedited cells next to it reach in)
    inside = mask & red
    print("red inside the stroke, before and after:", int(inside.sum()),
          int(colour(after, "red")[mask].sum()))
    assert inside.sum() >= 15
    assert colour(after, "red")[mask].sum() <= 0.1 * inside.sum()
    # outside the cells the stroke touched, by one cell (the bilinear reach), nothing changed
    cells = cells_of(mask, (8, 8)).float()[None, None]
    reach = torch.nn.functional.max_pool2d(cells, 3, 1, 1)[0, 0] > 0
    far = reach.repeat_interleave(4, 0).repeat_interleave(4, 1) == 0
    assert (far & red).sum() >= 10  # red is there, far from the stroke...
    assert torch.equal(after[:, far], before[:, far])  # ...and kept, like everything there
    assert torch.equal(after, render(painter.run, spec))  # what the replay generates

    # the downloads: the edited PNG, and the edit's JSON, which `ndcore intervene` replays
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
    by_id(browser, "download-png").click()
    by_id(browser, "download-json").click()
    stem = f"ganpaint-seed{seed}-remove-red"
    png, saved = downloads / f"{stem}.png", downloads / f"{stem}.json"
    wait(browser, lambda b: png.is_file() and saved.is_file() and saved.stat().st_size > 0,
         what="the downloads")
    with Image.open(png) as im:
        assert torch.equal(torch.from_numpy(np.asarray(im.convert("RGB")).copy())
                           .permute(2, 0, 1), after)
    assert json.loads(saved.read_text()) == edit
    done = run_ndcore(["intervene", str(painter.run.directory), "--edit", str(saved),
                       "--out", str(tmp_path / "replay")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "replay" / "edited.png").read_bytes() == png.read_bytes()

    shot = tmp_path / "paint.png"
    browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        assert len(im.convert("L").getcolors(1 << 16)) > 10  # it rendered


def test_brush_erase_and_undo(browser, page):
    url, painter = page
    load(browser, url, 2)
    browser.execute_script("document.getElementById('clear').click()")
    stroke(browser, [(4, 4), (4, 10), (4, 16)], 32)
    first = mask_of(browser, 32, 32)
    assert first[4:17, 4].all() and not first[:, 12:].any()

    brush = by_id(browser, "brush")  # a bigger brush: a wider stroke
    browser.execute_script("arguments[0].value = 6; arguments[0].dispatchEvent("
                           "new Event('input'))", brush)
    stroke(browser, [(20, 4), (20, 16)], 32)
    second = mask_of(browser, 32, 32)
    assert second[10, 15:26].all() and torch.equal(second[:, :12], first[:, :12])

    by_id(browser, "tool-erase").click()
    stroke(browser, [(20, 10), (20, 11)], 32)
    erased = mask_of(browser, 32, 32)
    assert not erased[10, 17:24].any() and erased[2, 20]

    by_id(browser, "undo").click()  # the erase
    assert torch.equal(mask_of(browser, 32, 32), second)
    by_id(browser, "undo").click()  # the wide stroke
    assert torch.equal(mask_of(browser, 32, 32), first)
    by_id(browser, "tool-paint").click()
    assert by_id(browser, "painted").text == f"{int(first.sum())} px painted"


def test_errors_show_on_the_page(browser, page):
    url, painter = page
    load(browser, url, 0)
    field = by_id(browser, "seed")
    field.clear()
    field.send_keys("99999999999")
    by_id(browser, "go-seed").click()
    wait(browser, lambda b: "expected an integer" in by_id(b, "status").text, what="the error")
    assert "error" in by_id(browser, "status").get_attribute("class")


# -- the docs' screenshot ---------------------------------------------------------------------

def main(argv=None) -> int:
    from ndcore.paint.server import Painter, start_server

    parser = argparse.ArgumentParser(description="a screenshot of GANPaint after one edit")
    parser.add_argument("run")
    parser.add_argument("--layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concept", required=True)
    parser.add_argument("--mode", choices=("remove", "add"), default="remove")
    parser.add_argument("--k", type=int)
    parser.add_argument("--stroke", default="0.35,0.15;0.35,0.85",
                        help="x,y;x,y;... in fractions of the image")
    parser.add_argument("--brush", type=int)
    parser.add_argument("--out", default="docs/paint-screenshot.png")
    args = parser.parse_args(argv)
    painter = Painter(args.run, args.layer)
    url, stop = start_server(painter)
    browser = open_browser(1180, 900)
    try:
        load(browser, url, args.seed)
        h, w = painter.size
        if args.brush:
            browser.execute_script("arguments[0].value = arguments[1]; arguments[0]."
                                   "dispatchEvent(new Event('input'))", by_id(browser, "brush"),
                                   args.brush)
        points = [tuple(float(v) for v in p.split(",")) for p in args.stroke.split(";")]
        dense = []
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for t in np.linspace(0, 1, 12):
                dense.append(((x0 + (x1 - x0) * t) * w, (y0 + (y1 - y0) * t) * h))
        stroke(browser, dense, w)
        if args.k:
            from selenium.webdriver.common.by import By

            browser.find_element(By.CSS_SELECTOR, f'input[data-concept="{args.concept}"]').click()
            field = by_id(browser, "k")
            field.clear()
            field.send_keys(str(args.k))
        edit, _ = edit_and_wait(browser, args.concept, args.mode)
        browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        time.sleep(0.3)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(args.out)
        print(f"{args.out}: seed {edit['seed']}, {edit['mode']} {edit['concept']}, units "
              f"{edit['units']}")
    finally:
        browser.quit()
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
