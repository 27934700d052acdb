"""`ndcore.edit` addresses units through the layer's layout, as dissection does.

Unit k of a layer is channel k of its [B, C, h, w] maps in every layout (nchw, nhwc,
tokens[:skip=K][:grid=HxW], vector), so ablating units [0, 1] of Swin's NHWC `features.7`
must zero `out[..., 0:2]`, not spatial rows 0-1. Each edit is checked against the layer's
output indexed by hand in its native layout, as the rest of the model sees it (captured by a
forward pre-hook of the test's own on the module that runs next). Small inputs keep it fast.
"""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import ndcore
from ndcore.errors import NdcoreError


def seen_by(model: nn.Module, nxt: nn.Module, x: torch.Tensor, edits=None, **kw):
    """(the model's output, a copy of what ``nxt`` receives) with ``edits`` applied."""
    seen = {}

    def keep(module, inputs):
        seen["x"] = inputs[0].detach().clone()

    handle = nxt.register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            if edits is None:
                out = model(x)
            else:
                with ndcore.edit(model, edits, **kw):
                    out = model(x)
    finally:
        handle.remove()
    return out, seen["x"]


def image(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# -- Swin: features.7 is [B, H, W, C] -----------------------------------------------------------

@pytest.fixture(scope="module")
def swin():
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None).eval()


def test_swin_nhwc_ablation_zeroes_channels_not_rows(swin):
    x = image(64)  # features.7 is [2, 2, 2, 768]
    plain_out, plain = seen_by(swin, swin.norm, x)
    assert plain.shape == (2, 2, 2, 768)
    assert (plain[..., 0:2] != 0).all(), "premise: units 0 and 1 are active"
    out, edited = seen_by(swin, swin.norm, x, {"features.7": ndcore.Ablate([0, 1])})
    assert torch.equal(edited[..., 0:2], torch.zeros(2, 2, 2, 2))
    assert torch.equal(edited[..., 2:], plain[..., 2:])  # rows 0-1 of the other units kept
    assert not torch.equal(out, plain_out), "the layers after features.7 saw no edit"


def test_swin_all_768_units_are_editable_and_769_is_not(swin):
    x = image(64, batch=1)
    _, edited = seen_by(swin, swin.norm, x, {"features.7": ndcore.Ablate(range(768))})
    assert torch.equal(edited, torch.zeros_like(edited))
    with pytest.raises(NdcoreError, match=r"layer 'features.7' has units 0..767; unit 768"):
        seen_by(swin, swin.norm, x, {"features.7": ndcore.Ablate([5, 768])})


def test_swin_region_maps_to_the_nhwc_grid(swin):
    """A region in the image's top-right quarter is cell (row 0, column 1) of the 2x2 grid."""
    x = image(64)
    region = torch.zeros(64, 64, dtype=torch.bool)
    region[4:20, 40:60] = True
    _, plain = seen_by(swin, swin.norm, x)
    _, edited = seen_by(swin, swin.norm, x, {"features.7": ndcore.Insert([3, 9], region, 7.5)})
    expected = plain.clone()
    expected[:, 0, 1, [3, 9]] = 7.5
    assert torch.equal(edited, expected)


# -- ConvNeXt: NHWC inside each block, between its two Permutes -----------------------------------

@pytest.fixture(scope="module")
def convnext():
    torch.manual_seed(0)
    return torchvision.models.convnext_tiny(weights=None).eval()


def test_convnext_block_linear_is_edited_channels_last(convnext):
    block = convnext.features[1][0].block  # Conv, Permute, LayerNorm, Linear, GELU, Linear, Permute
    layer = "features.1.0.block.3"  # the Linear: [B, H, W, 384]
    x = image(32)  # its grid is 8x8
    _, plain = seen_by(convnext, block[4], x)
    assert plain.shape == (2, 8, 8, 384)
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[0:4, :] = True  # the image's top 4 rows: grid row 0, every column
    _, edited = seen_by(convnext, block[4], x,
                        {layer: ndcore.Insert([5, 300], region, value=[-2.0, 3.0])})
    expected = plain.clone()
    expected[:, 0, :, 5] = -2.0
    expected[:, 0, :, 300] = 3.0
    assert torch.equal(edited, expected)
    _, ablated = seen_by(convnext, block[4], x, {layer: ndcore.Ablate(range(384))})
    assert torch.equal(ablated, torch.zeros_like(ablated))


# -- ViT: tokens, one class token then a row-major grid -------------------------------------------

@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return torchvision.models.vit_b_16(weights=None, image_size=64).eval()  # a 4x4 token grid


def test_vit_tokens_skip_the_class_token_and_follow_the_grid(vit):
    x = image(64, batch=1)
    nxt = vit.encoder.layers.encoder_layer_1
    _, plain = seen_by(vit, nxt, x)
    assert plain.shape == (1, 17, 768)
    _, edited = seen_by(vit, nxt, x, {"encoder.layers.encoder_layer_0": ndcore.Ablate([0, 1])})
    expected = plain.clone()
    expected[:, 1:, 0:2] = 0  # every grid token; token 0 (class) is not on the grid
    assert torch.equal(edited, expected)
    # cell (row 1, column 2) of the 4x4 grid is token 1 + 1 * 4 + 2 = 7
    region = torch.zeros(64, 64, dtype=torch.bool)
    region[20, 40] = True
    _, edited = seen_by(vit, nxt, x,
                        {"encoder.layers.encoder_layer_0": ndcore.Insert([700], region, 1.25)})
    expected = plain.clone()
    expected[:, 7, 700] = 1.25
    assert torch.equal(edited, expected)


# -- vector: a Linear's [B, C] output --------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10), nn.ReLU(),
                                  nn.Linear(10, 3))

    def forward(self, x):
        return self.body(x)


def test_vector_layer_units_are_its_features():
    model = MLP().eval()
    x = image(4, batch=3)
    _, plain = seen_by(model, model.body[2], x)
    assert plain.shape == (3, 10)
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[0, 0] = True  # any pixel covers a vector layer's one (whole-image) cell
    _, edited = seen_by(model, model.body[2], x,
                        {"body.1": ndcore.Insert([7, 2], region, value=[0.5, 9.0])})
    expected = plain.clone()
    expected[:, 7], expected[:, 2] = 0.5, 9.0
    assert torch.equal(edited, expected)
    with pytest.raises(NdcoreError, match=r"layer 'body.1' has units 0..9; unit 10"):
        seen_by(model, model.body[2], x, {"body.1": ndcore.Ablate([10])})


# -- unknown layouts: refused, or given with layouts= ---------------------------------------------

class ChannelsLast(nn.Module):
    """A Linear on [B, H, W, C] (undeclared: NHWC or NCHW cannot be told), and a layer of
    tokens [B, 1 + 2*3, C] with a 2x3 grid."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 5)
        self.after = nn.Identity()
        self.tok = nn.Identity()
        self.end = nn.Identity()

    def forward(self, x):  # x [B, 3, 2, 3]
        y = self.after(self.lin(x.permute(0, 2, 3, 1)))  # [B, 2, 3, 5]
        tokens = torch.cat([y.mean((1, 2))[:, None], y.flatten(1, 2)], 1)  # [B, 7, 5]
        return self.end(self.tok(tokens))


def test_an_undecidable_layout_is_refused_and_layouts_override_it():
    model = ChannelsLast().eval()
    x = torch.randn(2, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NdcoreError, match=r"cannot edit: layer 'lin' \(Linear\) outputs "
                                          r"\[2, 2, 3, 5\].*layouts=\{'lin': SPEC\}"):
        seen_by(model, model.after, x, {"lin": ndcore.Ablate([0])})
    with pytest.raises(NdcoreError, match=r"layer 'tok' outputs \[2, 7, 5\], whose layout is "
                                          r"not declared"):
        seen_by(model, model.end, x, {"tok": ndcore.Ablate([0])})
    # nhwc: unit 4 is the last axis
    _, plain = seen_by(model, model.after, x)
    _, edited = seen_by(model, model.after, x, {"lin": ndcore.Ablate([4])},
                        layouts={"lin": "nhwc"})
    expected = plain.clone()
    expected[..., 4] = 0
    assert torch.equal(edited, expected)
    # tokens with a 2x3 grid: image cell (row 1, column 0) is token 1 + 3 = 4
    _, plain = seen_by(model, model.end, x)
    region = torch.zeros(2, 3, dtype=torch.bool)
    region[1, 0] = True
    _, edited = seen_by(model, model.end, x, {"tok": ndcore.Insert([2], region, value=6.0)},
                        layouts={"t*": "tokens:skip=1:grid=2x3"})  # patterns, as --layout
    expected = plain.clone()
    expected[:, 4, 2] = 6.0
    assert torch.equal(edited, expected)
    with pytest.raises(NdcoreError, match=r"layer 'tok' outputs \[2, 7, 5\], which does not fit "
                                          r"layout tokens:grid=2x2"):
        seen_by(model, model.end, x, {"tok": ndcore.Ablate([0])},
                layouts={"tok": "tokens:grid=2x2"})


# -- what an edit must be (issue 21, item 7) ------------------------------------------------------

@pytest.mark.parametrize("edits, message", [
    ({"body.1": [1, 2]}, r"the edit of layer 'body.1' is a list .*; an edit is "
                         r"ndcore.Ablate\(units\) or ndcore.Insert\(units, value=...\)"),
    ([("body.1", ndcore.Ablate([1]))], r"edits must be a dict \{layer: edit\}, got list"),
    ({"body.1": lambda m: m}, r"the edit of layer 'body.1' is a function"),
])
def test_what_is_not_an_edit_is_refused_in_one_line(edits, message):
    model = MLP()
    with pytest.raises(NdcoreError, match=message):
        with ndcore.edit(model, edits):
            pass


@pytest.mark.parametrize("make, message", [
    (lambda: ndcore.Insert([1], value=float("nan")), r"Insert: value nan is not a finite number"),
    (lambda: ndcore.Insert([1, 2], value=[1.0, float("inf")]), r"Insert: value inf is not"),
    (lambda: ndcore.Insert([1], value=torch.tensor(-float("inf"))), r"Insert: value -inf"),
    (lambda: ndcore.Insert([1]), r"Insert: give value= .*Insert.at_thresholds\(run, layer, "
                                 r"units\)"),
    (lambda: ndcore.Insert([1], value="high"), r"Insert: value must be a number"),
    (lambda: ndcore.Ablate([1.5]), r"Ablate: units must be whole numbers .*1.5"),
    (lambda: ndcore.Ablate([True]), r"Ablate: units must be whole numbers"),
    (lambda: ndcore.Ablate("12"), r"Ablate: units must be a list of unit numbers"),
])
def test_bad_edits_are_refused_when_made(make, message):
    with pytest.raises(NdcoreError, match=message):
        make()


def test_a_wrong_number_of_insert_values_names_the_layer():
    model = MLP()
    with pytest.raises(NdcoreError, match=r"layer 'body.1': Insert has 2 values for 3 units"):
        seen_by(model, model.body[2], image(4), {"body.1": ndcore.Insert([0, 1, 2], value=[1, 2])})


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    here = Path(__file__).parent
    out = tmp_path_factory.mktemp("edit-layouts") / "run"
    ndcore.dissect_generator(f"python:{here / 'planted_generator.py'}:build", ["units"],
                             "colors", out, samples=40, seed=1, quantile=0.05, batch_size=40)
    return out


def test_insert_at_thresholds_is_the_cli_default(planted_run):
    """`ndcore intervene --insert` (no value) and `ndcore.intervene(insert=True)` insert each
    unit at its threshold; the Python edit spells the same rule Insert.at_thresholds."""
    out = planted_run
    thresholds = ndcore.load_result(out)["units"].thresholds
    e = ndcore.Insert.at_thresholds(out, "units", [2, 0])
    assert e.value == [float(thresholds[2]), float(thresholds[0])]
    default = ndcore.intervene(out, "units", [2, 0], insert=True, samples=4)
    assert default["edit"]["value"] == e.value
    with pytest.raises(NdcoreError, match=r"layer 'units' has units 0..3; unit 4"):
        ndcore.Insert.at_thresholds(out, "units", [4])
    with pytest.raises(NdcoreError, match=r"the run has no layer 'unit'"):
        ndcore.Insert.at_thresholds(out, "unit", [0])


@pytest.mark.parametrize("args, message", [
    (["--units", "1"], "give exactly one of --ablate and --insert [VALUE]"),
    (["--units", "1", "--ablate", "--insert"], "give exactly one of --ablate and --insert"),
    (["--units", "1", "--insert", "nan"], "--insert nan: expected a finite number"),
    (["--units", "1", "--insert=-inf"], "--insert -inf: expected a finite number"),
    (["--ablate"], "give either --units or --concept (with --top)"),
    (["--concept", "red", "--insert"], "the removal curve (--concept, --top) ablates: give "
                                       "--ablate"),
    (["--units", "1", "--ablate", "--samples", "0"], "--samples 0: must be >= 1"),
])
def test_cli_intervene_errors_name_the_flags(tmp_path, capsys, args, message):
    from ndcore.cli import main

    # the request is checked before the run is read: no run is needed
    assert main(["intervene", str(tmp_path / "no-run"), *args]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert message in text, text
    assert "=True" not in text


def test_interventions_edit_through_the_layouts_the_run_recorded(planted_run, tmp_path):
    """`ndcore intervene` and GANPaint generate through ``generate``, which hands the run's
    recorded layouts to the edit: a run that says its layer is a vector layer is held to it."""
    import json
    import shutil

    from ndcore.gan.editing.intervene import generate, load_generator_run

    run_dir = tmp_path / "run"
    shutil.copytree(planted_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["layouts"] = {"units": "vector"}
    (run_dir / "config.json").write_text(json.dumps(config))
    with load_generator_run(run_dir) as run:
        with pytest.raises(NdcoreError, match=r"layer 'units' outputs \[1, 4, 8, 8\], which "
                                              r"does not fit layout vector"):
            generate(run, [0], 0, {"units": ndcore.Ablate([1])})
