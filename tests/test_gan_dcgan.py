"""The real pretrained DCGAN (gan-face-generate's weights) dissected with the colors segmenter:
real units detect colours, and ablating a colour's top units removes some of it."""

import pytest

import ndcore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcgan") / "run"
    result = ndcore.dissect_generator("dcgan-faces", ["main.8"], "colors", out, samples=200,
                                      seed=0, batch_size=50)
    return out, result


def test_dcgan_units_detect_colours(dcgan_run):
    out, result = dcgan_run
    lr = result["main.8"]
    assert lr.num_units == 128
    assert result.config["model"]["weights"].endswith("weights.tar")
    detectors = lr.detectors()
    assert len(detectors) >= 5
    assert {"white", "black"} & {u.label for u in detectors}


def test_ablating_top_units_removes_their_colour(dcgan_run):
    out, result = dcgan_run
    best = max(result["main.8"].units, key=lambda u: u.iou)
    curve = ndcore.intervene(out, "main.8", concept=best.label, top=[4, 16], ablate=True,
                             samples=60, seed=5)
    fractions = [p["fraction"] for p in curve["points"]]
    assert fractions[0] < curve["before"] and fractions[1] < fractions[0]
