"""GANPaint's server, over real HTTP on 127.0.0.1: every endpoint, the edit of a planted
generator (unit k paints colour k) inside the painted region only, the exact replay of the
downloaded edit by `ndcore intervene --edit` and the Python API, and the refusals (bad JSON,
bad masks, unknown concepts, units and seeds out of range, foreign Host/Origin, floods)."""

import base64
import io
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import ndcore
from ndcore.errors import NdcoreError
from ndcore.gan.editing.edit_file import decode_mask, encode_mask, make_edit
from ndcore.gan.editing.edits import Ablate, box_mask
from ndcore.gan.editing.intervene import generate, unit_edit
from ndcore.paint.server import Painter, encode_request, host_allowed, allowed_names, \
    start_server
from planted_generator import COLORS, NAMES
from run_fixture import ndcore as run_ndcore, start_ndcore

HERE = Path(__file__).parent
PLANTED = f"python:{HERE / 'planted_generator.py'}:build"
SIZE = (32, 32)  # the planted generator's images; its layer `units` is 8x8 (4 px a cell)


def dissect_planted(out: Path) -> Path:
    ndcore.dissect_generator(PLANTED, ["units"], "colors", out, samples=300, seed=1,
                             quantile=0.05, batch_size=64)
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return dissect_planted(tmp_path_factory.mktemp("paint") / "run")


@pytest.fixture(scope="module")
def painter(planted):
    return Painter(planted, "units")


@pytest.fixture(scope="module")
def server(painter):
    url, stop = start_server(painter)
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop()


def colour(images: torch.Tensor, name: str) -> torch.Tensor:
    """bool [..., H, W]: the pixels painted with the planted colour ``name``."""
    rgb = COLORS[NAMES.index(name)].view(3, 1, 1)
    return (images.float() - rgb).abs().sum(-3) < 1


def png_pixels(data_url: str) -> torch.Tensor:
    assert data_url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def seed_with(run, name: str, left: int = 12, right: int = 20, least: int = 8) -> int:
    """A seed whose sample 0 has ``name`` both left of x=left and right of x=right."""
    for seed in range(500):
        is_c = colour(generate(run, [0], seed)[0], name)
        if is_c[:, :left].sum() >= least and is_c[:, right:].sum() >= least:
            return seed
    raise AssertionError(f"no seed with {name} on both sides")


def post(client, body, **kw):
    return client.post("/api/edit", json=body, **kw)


# -- the page and its assets ------------------------------------------------------------------

def test_page_and_assets_are_served_from_the_package(server):
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert '<script src="/static/app.js"' in page.text
    js = server.get("/static/app.js")
    css = server.get("/static/style.css")
    assert js.status_code == css.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "/api/edit" in js.text and css.headers["content-type"].startswith("text/css")
    # offline: nothing is loaded from another host
    for text in (page.text, js.text, css.text):
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), text[:200]
        assert "@import" not in text and "url(http" not in text
    # only the three assets: no path reaches a file
    for path in ("/static/server.py", "/static/../server.py", "/static/%2e%2e/server.py",
                 "/index.html", "/static/"):
        assert server.get(path).status_code == 404, path


def test_info_lists_the_concepts_with_units(server):
    info = server.get("/api/info").json()
    assert info["layer"] == "units" and info["num_units"] == 4
    assert info["image_size"] == [32, 32] and info["layer_size"] == [8, 8]
    assert sorted(c["name"] for c in info["concepts"]) == sorted(NAMES)
    assert all(c["units"] == 1 and c["k"] == 1 and c["best_iou"] > 0.3 and
               c["category"] == "color" for c in info["concepts"])
    assert info["concept_rule"]["above"] == "chance"  # a quantile run has chance statistics
    assert info["model"] == PLANTED and info["run"] == "run"
    assert "/" not in json.dumps({k: v for k, v in info.items() if k != "model"})  # no paths


def test_sample_is_sample_0_of_the_seed_and_cached(server, painter):
    first = server.get("/api/sample", params={"seed": 5})
    assert first.status_code == 200 and first.json()["seed"] == 5
    assert first.headers["cache-control"] == "no-store"
    expected = generate(painter.run, [0], 5)[0]
    assert torch.equal(png_pixels(first.json()["image"]), expected)
    assert server.get("/api/sample", params={"seed": 5}).json() == first.json()
    assert 5 in painter._originals
    assert server.get("/api/sample", params={"seed": 6}).json() != first.json()


# -- edits ------------------------------------------------------------------------------------

def test_remove_a_concept_inside_the_region_only(server, painter):
    seed = seed_with(painter.run, "red")
    region = box_mask((0, 0, 16, 32), SIZE)  # the left half: layer cells 0..3 of each row
    reply = post(server, encode_request(seed, "ablate", "red", region))
    assert reply.status_code == 200, reply.text
    data = reply.json()
    before = generate(painter.run, [0], seed)[0]
    after = png_pixels(data["image"])
    assert colour(before, "red")[:, :12].sum() >= 8
    assert colour(after, "red")[:, :12].sum() == 0  # gone where only edited cells reach
    # right of the edited cells' bilinear reach (x >= 20), the image is untouched
    assert torch.equal(after[:, :, 20:], before[:, :, 20:])
    assert colour(after, "red")[:, 20:].sum() >= 8
    assert torch.equal(after, generate(painter.run, [0], seed, {"units": Ablate([0], region)})[0])
    lr = painter.layer
    red = lr.vocabulary.label_names.index("red")
    assert data["units"] == [{"unit": 0, "iou": round(float(lr.iou[0, red]), 4),
                              "label": "red", "value": 0.0, "above_chance": True}]
    edit = data["edit"]
    assert edit["format"] == "ndcore-edit/1" and edit["seed"] == seed
    assert (edit["layer"], edit["mode"], edit["concept"]) == ("units", "ablate", "red")
    assert edit["units"] == [0] and edit["values"] == [0.0]
    assert torch.equal(decode_mask(edit["region"], SIZE), region)
    assert data["ms"] < 5000


def test_add_a_concept_at_each_units_threshold(server, painter):
    region = box_mask((0, 0, 12, 12), SIZE)
    lr = painter.layer
    blue = lr.vocabulary.label_names.index("blue")
    data = post(server, encode_request(3, "insert", "blue", region)).json()  # k: its 1 unit
    assert [r["unit"] for r in data["units"]] == [2]
    assert data["edit"]["values"] == [float(lr.thresholds[2])]
    after = png_pixels(data["image"])
    before = generate(painter.run, [0], 3)[0]
    assert colour(after, "blue")[:8, :8].sum() > colour(before, "blue")[:8, :8].sum() + 20
    # what `ndcore intervene --units 2 --insert --region` computes for this sample
    assert torch.equal(after, generate(painter.run, [0], 3,
                                       {"units": unit_edit(lr, [2], False, None, region)})[0])
    assert torch.equal(after[:, 20:, 20:], before[:, 20:, 20:])
    data = post(server, encode_request(3, "insert", "blue", region, k=2)).json()
    units = [r["unit"] for r in data["units"]]
    assert units[0] == 2 and len(units) == 2  # k=2: blue's unit, then the next by IoU
    assert [r["iou"] for r in data["units"]] == [round(float(lr.iou[u, blue]), 4) for u in units]
    assert data["edit"]["values"] == [float(lr.thresholds[u]) for u in units]


def test_explicit_units(server, painter):
    region = box_mask((8, 8, 24, 24), SIZE)
    data = post(server, encode_request(2, "ablate", None, region, units=[1, 3])).json()
    assert [r["unit"] for r in data["units"]] == [1, 3]
    assert [r["label"] for r in data["units"]] == ["green", "yellow"]
    assert data["edit"]["concept"] is None and data["edit"]["units"] == [1, 3]


def test_the_downloaded_edit_replays_exactly(server, painter, planted, tmp_path):
    seed = seed_with(painter.run, "green")
    region = torch.zeros(SIZE, dtype=torch.bool)
    region[4:20, 2:9] = True
    region[18:22, 2:30] = True  # a painted L, not a box
    for mode, concept in (("ablate", "green"), ("insert", "yellow")):
        data = post(server, encode_request(seed, mode, concept, region)).json()
        page_png = base64.b64decode(data["image"].split(",", 1)[1])
        path = tmp_path / f"{mode}.json"
        path.write_text(json.dumps(data["edit"], indent=1))
        # the command line
        done = run_ndcore(["intervene", str(planted), "--edit", str(path),
                           "--out", str(tmp_path / mode)])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "edited.png" in done.stdout
        assert (tmp_path / mode / "edited.png").read_bytes() == page_png  # byte for byte
        with Image.open(tmp_path / mode / "original.png") as im:
            original = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
        assert torch.equal(original, generate(painter.run, [0], seed)[0])
        assert json.loads((tmp_path / mode / "edit.json").read_text()) == data["edit"]
        # the Python API, from the file and from the dict
        for source in (path, data["edit"]):
            result = ndcore.intervene(planted, edit=source)
            assert torch.equal(result["images"]["after"][0], png_pixels(data["image"]))
            assert result["edit"] == data["edit"]
        assert not torch.equal(result["images"]["after"], result["images"]["before"])


def test_replay_refuses_mixed_options_and_bad_files(planted, painter, tmp_path):
    edit = make_edit(painter.run, "units", 4, "ablate", concept="red", k=1,
                     region=box_mask((0, 0, 8, 8), SIZE)).to_json()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(edit))
    cases = [
        (["--edit", str(good), "--units", "1"], "--edit gives the seed, units, values and "
                                                "region itself: drop --units"),
        (["--edit", str(good), "--seed", "3"], "drop --seed"),
        (["--edit", str(tmp_path / "missing.json")], "cannot read the edit"),
        (["--edit", str(good), "--layer", "render"], "the run has no layer 'render'"),
    ]
    for name, change, message in [
        ("bad-json", None, "not a JSON edit"),
        ("other-model", {"model": "dcgan-faces"}, "the edit was made on model 'dcgan-faces'"),
        ("wrong-size", {"region": {"size": [16, 16], "rle": [256]}}, "region is 16x16"),
        ("unit", {"units": [9], "values": [0.0]}, "unit 9 is out of range"),
        ("values", {"mode": "ablate", "values": [1.5]}, "an ablation sets its units to 0"),
        ("seed", {"seed": -2}, "seed -2: expected an integer"),
        ("format", {"format": "x"}, "format 'x'"),
    ]:
        path = tmp_path / f"{name}.json"
        path.write_text("{not json" if change is None else json.dumps({**edit, **change}))
        cases.append((["--edit", str(path)], message))
    for args, message in cases:
        done = run_ndcore(["intervene", str(planted), *args])
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        out = done.stdout.replace("\n", " ")
        assert out.startswith("error:") and message in out, (args, out)
    with pytest.raises(NdcoreError, match="give no units, ablate"):
        ndcore.intervene(planted, units=[1], ablate=True, edit=good)
    # an edit everywhere (region null) replays too
    result = ndcore.intervene(planted, edit={**edit, "region": None})
    assert not colour(result["images"]["after"][0], "red").any()


def test_masks_round_trip_through_run_lengths():
    rng = np.random.default_rng(0)
    masks = [torch.zeros(SIZE, dtype=torch.bool), torch.ones(SIZE, dtype=torch.bool)]
    masks += [torch.from_numpy(rng.random(SIZE) < p) for p in (0.01, 0.5, 0.99)]
    corner = torch.zeros(SIZE, dtype=torch.bool)
    corner[0, 0] = True  # starts painted: the first run (unpainted) is 0
    masks.append(corner)
    for mask in masks:
        coded = encode_mask(mask)
        assert sum(coded["rle"]) == 32 * 32 and coded["size"] == [32, 32]
        assert torch.equal(decode_mask(coded, SIZE), mask)
    assert encode_mask(corner)["rle"][:2] == [0, 1]


def dcgan_by_hand() -> torch.nn.Module:
    """gan-face-generate's Generator with the weights its wheel ships (saved on CUDA)."""
    import gan_face_generate
    from gan_face_generate.models import Generator

    generator = Generator(ngpu=0, nc=3, nz=100, ngf=64)
    weights = Path(gan_face_generate.__file__).parent / "weights.tar"
    state = torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"]
    generator.load_state_dict(state, strict=True)
    return generator.eval()


def dcgan_sample_by_hand(generator, seed, edit_after=None, units=(), values=(),
                         cells=None) -> torch.Tensor:
    """uint8 [3, 64, 64]: sample 0 of ``seed`` (z from numpy's PCG64 seeded with (seed, 0)),
    the Sequential run child by child; after child ``edit_after``, ``units`` are set to
    ``values`` in ``cells`` (bool [h, w]) of its output."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0])))
    x = torch.from_numpy(rng.standard_normal((1, 100, 1, 1), dtype=np.float32))
    with torch.no_grad():
        for index, child in enumerate(generator.main):
            x = child(x)
            if index == edit_after:
                x = x.clone()
                for unit, value in zip(units, values):
                    x[0, unit][cells] = value
    return ((x[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # tanh's [-1, 1] -> 0..255


@pytest.mark.slow
def test_the_dcgan_through_the_page_matches_a_hand_written_forward(tmp_path):
    run = tmp_path / "faces"
    ndcore.dissect_generator("dcgan-faces", ["main.8"], "colors", run, samples=200, seed=0,
                             batch_size=50)
    painter = Painter(run, "main.8")
    concept = painter.concepts[0]["name"]
    saved = ndcore.load_result(run)["main.8"]
    c = saved.vocabulary.label_names.index(concept)
    top6 = sorted(range(saved.num_units), key=lambda u: (-saved.iou[u, c], u))[:6]
    region = torch.zeros(64, 64, dtype=torch.bool)
    region[10:39, 22:43] = True  # not on the cell grid: the border cells are partly covered
    cells = region.reshape(16, 4, 16, 4).any(3).any(1)  # main.8 is 16x16: 4x4 pixels a cell
    generator = dcgan_by_hand()
    unedited = dcgan_sample_by_hand(generator, 11)
    url, stop = start_server(painter)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            sample = client.get("/api/sample", params={"seed": 11}).json()
            assert torch.equal(png_pixels(sample["image"]), unedited)
            for mode in ("insert", "ablate"):
                data = post(client, encode_request(11, mode, concept, region, k=6)).json()
                assert data["edit"]["units"] == top6  # the concept's top 6 units by IoU
                values = [0.0] * 6 if mode == "ablate" else \
                    [float(saved.thresholds[u]) for u in top6]  # inserted at their thresholds
                assert data["edit"]["values"] == values
                # main.8 is the ReLU after the third block: the edit goes between children 8 and 9
                expected = dcgan_sample_by_hand(generator, 11, 8, top6, values, cells)
                after = png_pixels(data["image"])
                assert torch.equal(after, expected)
                assert not torch.equal(after, unedited)
                replay = ndcore.intervene(run, edit=data["edit"])["images"]["after"][0]
                assert torch.equal(replay, after)
    finally:
        stop()


# -- refusals ---------------------------------------------------------------------------------

def good_body():
    return encode_request(1, "ablate", "red", box_mask((0, 0, 8, 8), SIZE))


@pytest.mark.parametrize("change, message", [
    ({"concept": "purple-ish"}, "unknown concept 'purple-ish': the run found units at layer "
                                "'units' for"),
    ({"concept": None, "units": [4]}, "layer 'units' has units 0..3; unit 4 is out of range"),
    ({"concept": None, "units": [-1]}, "unit -1 is out of range"),
    ({"concept": None, "units": []}, "no units to edit"),
    ({"concept": None, "units": ["1"]}, "units: expected a list of integers"),
    ({"k": 5}, "k 5: expected an integer from 1 to 4"),
    ({"k": 0}, "k 0: expected an integer from 1 to 4"),
    ({"k": 2.5}, "k 2.5: expected an integer"),
    ({"units": [1]}, "give either units or a concept"),
    ({"concept": None, "k": 1, "units": [1]}, "k goes with a concept"),
    ({"seed": None}, "seed None: expected an integer"),
    ({"seed": -1}, "seed -1: expected an integer from 0 to 4294967295"),
    ({"seed": 2 ** 32}, "seed 4294967296: expected an integer"),
    ({"seed": "3"}, "seed '3': expected an integer"),
    ({"seed": True}, "seed True: expected an integer"),
    ({"mode": "explode"}, "mode 'explode': expected 'ablate' or 'insert'"),
    ({"region": {"size": [16, 16], "rle": [256]}}, "region is 16x16 (HxW), the images are "
                                                   "32x32"),
    ({"region": {"size": [64, 64], "rle": [4096]}}, "region is 64x64"),
    ({"region": {"size": [32, 32], "rle": [1000]}}, "the runs cover 1000 pixels, the image "
                                                    "has 1024"),
    ({"region": {"size": [32, 32], "rle": [1020, -2, 6]}}, "run lengths must be integers"),
    ({"region": {"size": [32, 32], "rle": [1] * 1026}}, "at most 1025 run lengths"),
    ({"region": {"size": [32, 32], "rle": [1024]}}, "nothing is painted"),
    ({"region": None}, "paint a region first"),
    ({"region": "/etc/passwd"}, 'region: expected {"size"'),
    ({"path": "/etc/passwd"}, "unknown field(s) path"),
])
def test_bad_edits_are_4xx_with_a_message(server, change, message):
    body = {**good_body(), **change}
    body = {k: v for k, v in body.items() if v is not None or k == "region"}
    reply = post(server, body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]


def test_bad_bodies_are_4xx_with_a_message(server):
    bad = server.post("/api/edit", content=b"{not json", headers={"content-type":
                                                                  "application/json"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("malformed JSON")
    assert server.post("/api/edit", content=b"\xff\xfe", headers={
        "content-type": "application/json"}).status_code == 400
    listed = post(server, [1, 2])
    assert listed.status_code == 400 and "expected a JSON object" in listed.json()["error"]
    form = server.post("/api/edit", content=json.dumps(good_body()),
                       headers={"content-type": "text/plain"})  # what a cross-site form sends
    assert form.status_code == 415 and "application/json" in form.json()["error"]
    huge = {**good_body(), "region": {"size": [32, 32], "rle": [0] * 200_000}}
    big = post(server, huge)
    assert big.status_code == 413 and "the mask is too large" in big.json()["error"]
    assert server.get("/api/edit").status_code == 405
    for seed in ("-1", "abc", "99999999999999", "4294967296", ""):
        reply = server.get("/api/sample", params={"seed": seed})
        assert reply.status_code == 400 and "seed" in reply.json()["error"], seed
    assert server.get("/api/sample").json()["error"] == "give ?seed=N"


def test_body_size_is_checked_before_reading(server):
    port = int(str(server.base_url).rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/edit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 999999999\r\n\r\n{")
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413"), head


# -- Host and Origin: DNS rebinding -----------------------------------------------------------

@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8765", True), ("localhost:8765", True), ("LOCALHOST", True), ("[::1]:8765", True),
    ("127.1.2.3", True), ("evil.example:8765", False), ("localhost.evil.example", False),
    ("192.168.1.5:8765", False), ("127.0.0.1:80:80", False), ("[::1", False), ("", False),
])
def test_host_header_names_this_machine(server, host, ok):
    reply = server.get("/api/info", headers={"host": host})
    assert reply.status_code == (200 if ok else 403), (host, reply.text)
    if not ok:
        assert "DNS rebinding" in reply.json()["error"]


def test_origin_must_be_this_server(server):
    url = str(server.base_url).rstrip("/")
    assert post(server, good_body(), headers={"origin": url}).status_code == 200
    for origin in ("http://evil.example", "null", "http://evil.example:8765"):
        reply = post(server, good_body(), headers={"origin": origin})
        assert reply.status_code == 403 and "Origin" in reply.json()["error"], origin


def test_host_rules_for_other_bindings():
    names, any_ip = allowed_names("0.0.0.0")
    assert any_ip and host_allowed("10.1.2.3:8765", names, any_ip)
    assert not host_allowed("evil.example", names, any_ip)  # names never pass, IPs do
    names, any_ip = allowed_names("10.1.2.3")
    assert host_allowed("10.1.2.3:8765", names, any_ip)
    assert not host_allowed("10.1.2.4:8765", names, any_ip)


# -- concurrency ------------------------------------------------------------------------------

def test_a_flood_is_refused_beyond_the_queue(painter, monkeypatch):
    original = painter.apply

    def slow(body):
        time.sleep(1.0)
        return original(body)

    monkeypatch.setattr(painter, "apply", slow)
    url, stop = start_server(painter, max_pending=2)
    try:
        barrier = threading.Barrier(8)
        replies = []

        def one():
            with httpx.Client(base_url=url, timeout=30) as client:
                barrier.wait()
                replies.append(post(client, good_body()))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in replies)
        assert codes == [200] * 2 + [503] * 6, codes
        busy = next(r for r in replies if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]
        monkeypatch.setattr(painter, "apply", original)
        with httpx.Client(base_url=url, timeout=30) as client:  # the queue drained
            assert post(client, good_body()).status_code == 200
    finally:
        stop()


# -- the command ------------------------------------------------------------------------------

def test_paint_command_serves_on_the_loopback(planted):
    proc = start_ndcore(["paint", str(planted), "--layer", "units", "--port", "0"])
    try:
        url = None
        deadline = time.monotonic() + 120
        lines = []
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"open (http://\S+/)", line)
            url = found.group(1) if found else None
        assert url is not None and url.startswith("http://127.0.0.1:"), lines + \
            [proc.stderr.read() if proc.poll() is not None else ""]
        assert any("red (1)" in l for l in lines)
        info = httpx.get(url + "api/info", timeout=30).json()
        assert info["layer"] == "units"
    finally:
        proc.terminate()
        proc.wait(30)


def test_paint_command_errors_are_one_line(planted, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_ndcore(["paint", str(planted), "--port", str(port)])
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stdout
    done = run_ndcore(["paint", str(planted), "--layer", "nope", "--port", "0"])
    assert done.returncode == 2 and "the run has no layer 'nope'" in done.stdout
    done = run_ndcore(["paint", str(tmp_path), "--port", "0"])
    assert done.returncode == 2 and done.stdout.startswith("error:")
