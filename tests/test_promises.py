"""Promises of the README that no other test holds ndcore to, each checked where it is made:
`ndcore.dissect()` called as the README shows it; `--union` on `ndcore summary`, `report` and
`compare` (what they print and write is the run relabelled as `ndcore.load_result(dir,
union=...)` labels it); `--log-file`; `--latent-shape`; `ndcore paint --host`; and a resumed run
whose `--cutoff` / `--union` changed (its labels follow the new options, its thresholds and
counts are a fresh run's)."""

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import ndcore
import ndcore.cli
from run_fixture import (assert_same_results, dissect_args, ndcore as run_ndcore, start_ndcore,
                         write_dataset, write_model)

HERE = Path(__file__).parent
PLANTED = HERE / "planted_generator.py"
LAYERS = ["inner.1", "inner.3", "inner.4"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The small Broden-format dataset and model of run_fixture, and a run of it (paper union,
    the default), made with the Python API."""
    root = tmp_path_factory.mktemp("promises")
    data = write_dataset(root / "data", n_images=48)
    model = write_model(root / "model.py")
    run = root / "run"
    ndcore.dissect(f"python:{model}:build", LAYERS, f"broden:{data}", out=run, batch_size=4,
                   quantile=0.05, workers=0)
    return root, data, model, run


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A dissection of the planted generator (unit k paints colour k)."""
    out = tmp_path_factory.mktemp("planted") / "run"
    ndcore.dissect_generator(f"python:{PLANTED}:build", ["units"], "colors", out, samples=64,
                             seed=1, quantile=0.05, batch_size=32)
    return out


def cli(capsys, *args) -> str:
    """Run ``ndcore ARGS`` in this process; its exit status must be 0; returns what it printed."""
    capsys.readouterr()
    status = ndcore.cli.main([str(a) for a in args])
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def rows(text: str):
    """Each printed line as its table cells (rich's borders and padding dropped)."""
    return [re.split(r"[\s│┃|]+", line.strip(" │┃|")) for line in text.splitlines()]


def significance_cells(summary: dict) -> list:
    """The table's chance and confidence cells (significant detectors, stable labels), which
    sit between the detectors and the unique detectors when the run has them."""
    return [str(summary[k]) for k in ("detectors_fdr", "stable_labels") if k in summary]


def summary_rows(result) -> list:
    """The rows `ndcore summary --top 99` prints for ``result``: per layer (units, detectors,
    unique), per category (detectors/unique), and every unit with its label and IoU."""
    expected = []
    cats = result.vocabulary.categories
    for name, lr in result.layers.items():
        s = lr.summary()
        expected.append([name, str(s["units"]), str(s["detectors"]), *significance_cells(s),
                         str(s["unique_detectors"])])
        expected.append([name] + [f"{s['categories'][c]['detectors']}/"
                                  f"{s['categories'][c]['unique']}" for c in cats])
        expected += [[u.category, str(u.unit), u.label, f"{u.iou:.3f}"] for u in lr.units
                     if u.label]
    return expected


# -- the Python API, as the README shows it ---------------------------------------------------

@pytest.mark.filterwarnings("ignore:layer 'layer[34]'")  # 16 px images: 1x1 maps, few values
def test_dissect_called_as_in_the_readme(tmp_path, workspace):
    """README: ndcore.dissect("torchvision:resnet18", ["layer3", "layer4"], "broden:DIR",
    out=..., weights="resnet18.pth", batch_size=64); result["layer4"].summary();
    ndcore.load_result(out, union="lite", cutoff=0.05)."""
    _, data, _, _ = workspace
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    weights = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), weights)
    out = tmp_path / "runs" / "r18"

    result = ndcore.dissect("torchvision:resnet18", ["layer3", "layer4"], f"broden:{data}",
                            out=str(out), weights=str(weights), batch_size=64)

    summary = result["layer4"].summary()
    assert summary["units"] == 512 and summary["images"] == 48 and summary["union"] == "paper"
    config = json.loads((out / "config.json").read_text())
    assert config["complete"] and config["run"]["batch_size"] == 64
    assert config["model"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # the thresholds are the top 0.5% of layer4's activations over the 48 images, computed here
    # with torchvision's model, the given weights and ImageNet normalisation (0-255 scale)
    images = sorted((data / "images" / "src").glob("img[0-9][0-9][0-9][0-9].png"))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy())
                     for p in images]).permute(0, 3, 1, 2).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    seen = {}

    def keep(module, inputs, output):  # returns None: the output stays as it is
        seen["maps"] = output.clone()

    handle = net.layer4.register_forward_hook(keep)
    with torch.no_grad():
        net((x - mean) / std)
    handle.remove()
    acts = seen["maps"].transpose(0, 1).reshape(512, -1).numpy()
    np.testing.assert_allclose(result["layer4"].thresholds, np.quantile(acts, 0.995, axis=1),
                               rtol=1e-5, atol=1e-7)

    again = ndcore.load_result(str(out), union="lite", cutoff=0.05)
    relabelled = again["layer4"].summary()
    assert relabelled["union"] == "lite" and relabelled["cutoff"] == 0.05
    assert relabelled["detectors"] == sum(u.iou > 0.05 for u in again["layer4"].units)
    assert np.array_equal(again["layer4"].thresholds, result["layer4"].thresholds)


# -- --union on summary, report and compare ---------------------------------------------------

def test_summary_union_prints_the_relabelled_run(workspace, capsys):
    run = workspace[3]
    lite = summary_rows(ndcore.load_result(run, union="lite"))
    paper = summary_rows(ndcore.load_result(run))
    assert [r for r in lite if r not in paper], "premise: the union changes what is printed"
    printed = rows(cli(capsys, "summary", run, "--union", "lite", "--top", "99"))
    missing = [r for r in lite if r not in printed]
    assert not missing, missing


def test_report_union_writes_the_relabelled_run(workspace, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(workspace[3], run)
    cli(capsys, "report", run, "--union", "lite", "--quiet", "--workers", "1")
    lite, paper = ndcore.load_result(run, union="lite"), ndcore.load_result(run)
    differ = 0
    for name, lr in lite.layers.items():
        page = next(p for p in (run / "report").glob("*.html")
                    if f"<h1>{name}</h1>" in p.read_text())
        html = page.read_text()
        assert "Union convention: lite;" in html
        cards = re.findall(r'data-unit="(\d+)" data-iou="([0-9.]+)" data-label="([^"]*)"\s*'
                           r'data-category="([^"]*)"', html)
        shown = sorted((int(u), iou, label, cat) for u, iou, label, cat in cards)
        assert shown == [(u.unit, f"{u.iou:.6f}", u.label, u.category) for u in lr.units]
        differ += sum(a.iou != b.iou for a, b in zip(lr.units, paper[name].units))
    assert differ, "premise: the union changes some unit's IoU"
    # the index's "this report" section (the run's own options still say paper)
    assert '<td>union</td><td class="wrap">lite</td>' in (run / "report" / "index.html").read_text()


def test_compare_union_relabels_every_run(workspace, tmp_path, capsys):
    run = workspace[3]
    svg = tmp_path / "chart.svg"
    printed = rows(cli(capsys, "compare", run, "--union", "lite", "--out", svg))
    expected, before = [], []
    for union, into in (("lite", expected), (None, before)):
        result = ndcore.load_result(run, union=union)
        for name, lr in result.layers.items():
            s = lr.summary()
            into.append([run.name, name, str(s["units"]), str(s["detectors"]),
                         *significance_cells(s), str(s["unique_detectors"])] +
                        [f"{s['categories'][c]['detectors']}/{s['categories'][c]['unique']}"
                         for c in result.vocabulary.categories])
    assert expected != before, "premise: the union changes the table"
    assert [r for r in printed if r[:2] in [[run.name, layer] for layer in LAYERS]] == expected
    assert svg.is_file()


# -- --log-file -------------------------------------------------------------------------------

@pytest.mark.slow  # a process that imports torchvision: about 5 s
def test_log_file_receives_warnings_and_errors(tmp_path, workspace):
    data = workspace[1]
    log = tmp_path / "run.log"
    done = run_ndcore(["--log-file", str(log), "dissect", "--model", "torchvision:resnet18",
                       "--random-init", "--layers", "layer9", "--dataset", f"broden:{data}",
                       "--out", str(tmp_path / "out"), "--workers", "0", "--quiet"])
    assert done.returncode == 2 and "layer 'layer9' not found" in done.stdout
    text = log.read_text()
    assert "RANDOMLY INITIALISED weights" in text  # the warning
    assert re.search(r"ERROR .*layer 'layer9' not found", text)  # the error


# -- --latent-shape ---------------------------------------------------------------------------

def test_latent_shape_makes_a_module_without_one_a_generator(tmp_path, planted_run, capsys):
    out = tmp_path / "run"
    args = ["dissect", "--model", f"python:{PLANTED}:build_no_latent", "--layers", "units",
            "--segmenter", "colors", "--samples", "64", "--seed", "1", "--quantile", "0.05",
            "--batch-size", "32", "--quiet", "--no-report"]
    assert ndcore.cli.main(args + ["--out", str(tmp_path / "refused")]) == 2
    assert "not a generator" in capsys.readouterr().out
    cli(capsys, *args, "--out", out, "--latent-shape", "12,1,1")
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["latent_shape"] == [12, 1, 1]
    # the same samples as the planted generator, whose module says (12, 1, 1) itself
    assert np.array_equal(np.load(out / "units" / "thresholds.npy"),
                          np.load(planted_run / "units" / "thresholds.npy"))
    assert (out / "units" / "tally.csv").read_bytes() == \
        (planted_run / "units" / "tally.csv").read_bytes()
    # interventions on the run draw their latents with the recorded shape
    effects = ndcore.intervene(out, "units", units=[0], ablate=True, samples=16)
    assert effects["concepts"]["red"]["after"] == 0 < effects["concepts"]["red"]["before"]


# -- paint --host -----------------------------------------------------------------------------

def test_paint_listens_on_the_given_host(planted_run):
    """127.0.0.2 is a loopback address other than the default 127.0.0.1: the server must be
    reachable there, and only there."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("this system has no loopback address 127.0.0.2")
    proc = start_ndcore(["paint", str(planted_run), "--host", "127.0.0.2", "--port", "0"])
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    try:
        url, seen, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(r"open (http://\S+/)", seen[-1])
            url = found.group(1) if found else None
        assert url is not None, seen + [proc.stderr.read() if proc.poll() is not None else ""]
        assert url.startswith("http://127.0.0.2:"), url
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "/static/app.js" in page.text
        with pytest.raises(httpx.ConnectError):
            httpx.get(url.replace("127.0.0.2", "127.0.0.1"), timeout=5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


# -- a resumed run with another --cutoff / --union --------------------------------------------

@pytest.mark.slow
def test_resumed_run_takes_a_new_cutoff_and_union(workspace, tmp_path):
    """README: "Labelling options (--union, --cutoff) ... may change between the interrupted
    run and its continuation"."""
    _, data, model, _ = workspace
    fresh = tmp_path / "fresh"  # the run as if it had been started with the new options
    ndcore.dissect(f"python:{model}:build", LAYERS, f"broden:{data}", out=fresh, batch_size=4,
                   quantile=0.05, workers=0, union="lite", cutoff=0.0525)
    default = ndcore.load_result(fresh, union="paper", cutoff=0.04).summary()
    assert default != json.loads((fresh / "summary.json").read_text()), \
        "premise: the new options change the labels"

    slow = write_model(tmp_path / "slow.py", slow_forward=0.15)
    out = tmp_path / "run"
    proc = start_ndcore(dissect_args(slow, data, out, "--checkpoint-every", "0.01"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                progress = json.loads((out / "checkpoint" / "progress.json").read_text())
            except (OSError, ValueError):
                progress = {}
            if progress.get("phase") == 1 and progress.get("batches_done", 0) >= 3:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not json.loads((out / "config.json").read_text())["complete"], \
        "premise: the run was killed before it finished"

    done = run_ndcore(dissect_args(slow, data, out, "--checkpoint-every", "0.01",
                                   "--union", "lite", "--cutoff", "0.0525"))
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["resumed"]
    assert (config["options"]["union"], config["options"]["cutoff"]) == ("lite", 0.0525)
    assert_same_results(fresh, out, LAYERS)  # thresholds, counts, top-k and tally.csv (lite)
    assert (out / "summary.json").read_bytes() == (fresh / "summary.json").read_bytes()
    for layer in LAYERS:
        assert (out / layer / "summary.json").read_bytes() == \
            (fresh / layer / "summary.json").read_bytes()
        assert (out / layer / "iou.npy").read_bytes() == (fresh / layer / "iou.npy").read_bytes()
