"""Caveats: what a run warned about on stderr is also recorded (config.json, the layer's
summary.json) and stands at the top of the report page it concerns."""

import html
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

import ndcore
from ndcore.api import run_dissection
from ndcore.engine.options import DissectOptions
from ndcore.engine.run import Dissection
from ndcore.report import write_report
from ndcore.specs import resolve_dataset, resolve_model

HERE = Path(__file__).resolve().parent
PLANTED = f"python:{HERE / 'planted_generator.py'}:build"
RANDOM = "demo: using RANDOMLY INITIALISED weights (--random-init)"
# 60 images x 14x14 maps at the top 0.001: a threshold on about 11.8 values (conv4); conv2's
# 28x28 maps give 47, enough
THIN = "layer 'conv4': 60 images x 14x14"


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("caveats") / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dissection("demo", ["conv2", "conv4"], "synthetic:60", out, random_init=True,
                       quantile=0.001, topk=5, batch_size=30)
    write_report(out, progress=False)
    return out, [str(w.message) for w in caught]


def top_of(page: Path) -> str:
    """The page from its <h1> to the first <h2> (entities decoded): what a reader sees first."""
    text = page.read_text(encoding="utf-8")
    return html.unescape(text[text.index("<h1>"):text.index("<h2>")])


def config_value(index: Path, key: str) -> str:
    found = re.search(rf"<tr><td>{re.escape(key)}</td><td class=\"wrap\">(.*?)</td>",
                      index.read_text(encoding="utf-8"))
    assert found, key
    return found.group(1)


def test_random_init_is_recorded_and_stands_atop_the_index(random_run):
    out, warned = random_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["random_init"] is True
    assert config["caveats"] == [RANDOM]
    assert RANDOM in warned  # still warned on stderr
    assert RANDOM in top_of(out / "report" / "index.html")
    for layer in ("conv2", "conv4"):  # it concerns every layer's numbers
        assert RANDOM in top_of(out / "report" / f"{layer}.html")
    assert config_value(out / "report" / "index.html", "random init") == "yes"


def test_thin_threshold_is_the_layers_caveat(random_run):
    out, warned = random_run
    config = json.loads((out / "config.json").read_text())
    thin = [w for w in warned if w.startswith(THIN)]
    assert len(thin) == 1  # warned once, by the forward stage, not again when recorded
    assert config["layer_caveats"] == {"conv4": thin}
    summary = json.loads((out / "conv4" / "summary.json").read_text())["summary"]
    assert summary["caveats"] == thin
    assert json.loads((out / "conv2" / "summary.json").read_text())["summary"]["caveats"] == []
    assert json.loads((out / "summary.json").read_text())["conv4"]["caveats"] == thin
    assert thin[0] in top_of(out / "report" / "conv4.html")
    assert THIN not in html.unescape((out / "report" / "conv2.html").read_text())
    assert "conv4.html#caveats" in (out / "report" / "index.html").read_text()
    # a relabelled or reloaded result keeps it
    assert ndcore.load_result(out, cutoff=0.01)["conv4"].caveats == thin


def test_a_run_from_before_caveats_were_recorded_loads_without_them(random_run, tmp_path):
    out, _ = random_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    config = json.loads((copy / "config.json").read_text())
    for key in ("caveats", "layer_caveats"):
        config.pop(key)
    config["model"].pop("random_init")
    (copy / "config.json").write_text(json.dumps(config))
    assert ndcore.load_result(copy)["conv4"].caveats == []
    index = write_report(copy, progress=False)
    assert 'id="caveats"' not in index.read_text()
    assert "random init" not in index.read_text()  # not known: not claimed either way


def test_a_run_with_trained_weights_has_no_caveats():
    model = resolve_model("demo")
    source = resolve_dataset("synthetic:20")
    config = Dissection(model, ["conv2"], source, DissectOptions()).config()
    assert config["model"]["random_init"] is False and config["caveats"] == []


def test_random_init_is_what_the_factory_did_not_what_was_asked():
    """A python: factory uses its weights as built even with --random-init: not flagged."""
    assert resolve_model(PLANTED, random_init=True).random_init is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert resolve_model("demo", random_init=True).random_init is True


def test_elapsed_shows_a_number(random_run):
    out, _ = random_run
    config = json.loads((out / "config.json").read_text())
    shown = config_value(out / "report" / "index.html", "elapsed (s)")
    assert float(shown) == pytest.approx(config["run"]["elapsed_s"], rel=1e-5)


def test_footer_suggests_the_runs_own_categories(random_run):
    out, _ = random_run
    cats = json.loads((out / "config.json").read_text())["dataset"]["categories"]
    for page in (out / "report").glob("*.html"):
        footer = page.read_text()[page.read_text().index("<footer"):]
        suggested = re.search(r"--categories ([\w,]+)", footer).group(1).split(",")
        assert set(suggested) <= set(cats) and len(suggested) < len(cats), page


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("generator") / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 60 samples x 8x8 maps at the top 0.005: a threshold on about 19 values
        ndcore.dissect_generator(PLANTED, ["units"], "colors", out, samples=60, seed=1,
                                 batch_size=60)
    ndcore.intervene(out, "units", [0, 2], ablate=True, samples=10,
                     out=out / "interventions" / "ablate")
    write_report(out, progress=False)
    return out, [str(w.message) for w in caught]


def test_generator_layer_caveat_is_warned_and_recorded(generator_run):
    """A generator's stage does not warn about its maps: the run does, when it records them."""
    out, warned = generator_run
    thin = [w for w in warned if w.startswith("layer 'units': 60 images x 8x8")]
    assert len(thin) == 1
    assert json.loads((out / "units" / "summary.json").read_text())["summary"]["caveats"] == thin
    assert thin[0] in top_of(out / "report" / "units.html")
    assert json.loads((out / "config.json").read_text())["caveats"] == []


def test_generator_report_claims_no_image_preprocessing(generator_run):
    index = generator_run[0] / "report" / "index.html"
    text = index.read_text()
    assert "imagenet" not in text and "<td>preprocess</td>" not in text
    assert config_value(index, "input").startswith("latents z ~ N(0, I) of shape 12, 1, 1")


def test_generator_footer_and_intervention_heading(generator_run):
    index = (generator_run[0] / "report" / "index.html").read_text()
    footer = index[index.index("<footer"):]
    assert "--categories" not in footer  # a colour-only run: no other category to pick
    assert "<h3>ablate units 0, 2 of units (10 samples)</h3>" in index
