"""Layouts: every layout against its hand rearrangement to [B, C, H, W], with real torchvision
Swin, ConvNeXt, ViT and MaxViT modules (random weights, small configurations), whole
dissections of raw layers against hand-rearranged ones, refusals, edits, warnings."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.maxvit import MaxVit
from torchvision.models.swin_transformer import (PatchMergingV2, SwinTransformer,
                                                 SwinTransformerBlockV2)
from torchvision.models.vision_transformer import VisionTransformer

from broden_fixture import write_broden
from ndcore.api import run_dissection
from ndcore.capture import (LayerCapture, Layout, declared_layouts, describe_layers, map_notes,
                            parse_layout, parse_layout_options, recognize)
from ndcore.data.broden import BrodenDataset
from ndcore.errors import LayerError, NdcoreError
from ndcore.models import ModelAdapter, Preprocess


def swin(v2=False):
    torch.manual_seed(0)
    extra = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    # embed_dim 8 at 32x32: features.0 is [B, 8, 8, 8], so no shape rule could tell C from W
    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2], num_heads=[2, 2],
                           window_size=[2, 2], num_classes=10, **extra).eval()


def vit():
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=10).eval()


def convnext():
    torch.manual_seed(0)
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=10).eval()


def maxvit():
    torch.manual_seed(0)
    return MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16],
                  block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0,
                  num_classes=10).eval()


def raw_output(model, layer, x):
    """The layer's output as the model made it (no ndcore code involved)."""
    got = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: got.setdefault("y", o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return got["y"]


def by_hand(y, kind, skip=0, grid=None):
    """[B, C, H, W] built element by element from the raw output (independent of Layout)."""
    if kind == "nchw":
        return y
    if kind == "vector":
        return y.reshape(y.shape[0], y.shape[1])[:, :, None, None]
    if kind == "nhwc":
        b, h, w, c = y.shape
        out = torch.empty(b, c, h, w, dtype=y.dtype)
        for i in range(h):
            for j in range(w):
                out[:, :, i, j] = y[:, i, j, :]
        return out
    b, n, c = y.shape
    h, w = grid
    out = torch.empty(b, c, h, w, dtype=y.dtype)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = y[:, skip + i * w + j, :]
    return out


def capture(model, layers, x, **kw):
    with torch.no_grad(), LayerCapture(model, layers, **kw) as cap:
        maps = cap(x)
    return maps, cap.layouts


CASES = [
    # model, layer, expected layout, hand rearrangement
    (swin, "features.0.0", "nchw", ("nchw",)),  # the patch-embedding conv
    (swin, "features.0", "nhwc", ("nhwc",)),
    (swin, "features.1", "nhwc", ("nhwc",)),
    (swin, "features.1.0.mlp.0", "nhwc", ("nhwc",)),  # 32 units: the MLP's hidden layer
    (swin, "features.2", "nhwc", ("nhwc",)),  # patch merging
    (swin, "norm", "nhwc", ("nhwc",)),
    (swin, "permute", "nchw", ("nchw",)),
    (swin, "avgpool", "nchw", ("nchw",)),
    (swin, "head", "vector", ("vector",)),
    (lambda: swin(v2=True), "features.1.1", "nhwc", ("nhwc",)),
    (convnext, "features.1.0.block.0", "nchw", ("nchw",)),
    (convnext, "features.1.0.block.2", "nhwc", ("nhwc",)),
    (convnext, "features.1.0.block.3", "nhwc", ("nhwc",)),
    (convnext, "features.1.0.block.6", "nchw", ("nchw",)),
    (convnext, "features.1", "nchw", ("nchw",)),
    (convnext, "classifier.2", "vector", ("vector",)),
    (vit, "conv_proj", "nchw", ("nchw",)),
    (vit, "encoder.layers.encoder_layer_1", "tokens:skip=1:grid=4x4", ("tokens", 1, (4, 4))),
    (vit, "encoder.layers.encoder_layer_0.mlp.0", "tokens:skip=1:grid=4x4",
     ("tokens", 1, (4, 4))),
    (vit, "encoder", "tokens:skip=1:grid=4x4", ("tokens", 1, (4, 4))),
    (vit, "heads", "vector", ("vector",)),
    (maxvit, "blocks.0.layers.0.layers.window_attention", "nchw", ("nchw",)),
    (maxvit, "classifier.0", "nchw", ("nchw",)),
    (maxvit, "classifier.5", "vector", ("vector",)),
]


@pytest.mark.parametrize("build,layer,layout,hand", CASES,
                         ids=[f"{c[0]().__class__.__name__}-{c[1]}" for c in CASES])
def test_layout_matches_hand_rearrangement(build, layer, layout, hand):
    model = build()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps, layouts = capture(model, [layer], x)
    assert str(layouts[layer]) == layout
    expected = by_hand(raw_output(model, layer, x), *hand)
    got = maps[layer]
    assert got.is_contiguous()
    assert torch.equal(got, expected)  # exactly: a rearrangement, no arithmetic


def test_several_layouts_in_one_pass_and_unit_numbers():
    model = vit()
    x = torch.randn(3, 3, 32, 32)
    layers = ["conv_proj", "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_0.mlp.0",
              "heads.head"]
    maps, layouts = capture(model, layers, x)
    assert [tuple(maps[l].shape) for l in layers] == [(3, 16, 4, 4), (3, 16, 4, 4),
                                                      (3, 32, 4, 4), (3, 10, 1, 1)]
    # unit k is channel k: the class token's channel k is left out, patch (i, j) is map (i, j)
    y = raw_output(model, "encoder.layers.encoder_layer_0", x)
    assert torch.equal(maps["encoder.layers.encoder_layer_0"][:, 5, 2, 3], y[:, 1 + 2 * 4 + 3, 5])


def test_recognised_inside_any_wrapper():
    """A python: factory that wraps a torchvision model gets the same layouts."""
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = swin()

        def forward(self, x):
            return self.backbone(x)

    model = Wrapper().eval()
    x = torch.randn(2, 3, 32, 32)
    maps, layouts = capture(model, ["backbone.features.1"], x)
    assert str(layouts["backbone.features.1"]) == "nhwc"
    assert torch.equal(maps["backbone.features.1"],
                       by_hand(raw_output(model, "backbone.features.1", x), "nhwc"))
    assert str(recognize(nn.Sequential(vit()))["0.encoder"]) == "tokens:skip=1:grid=4x4"


def test_declared_tokens_with_registers_and_a_rectangular_grid():
    class Tokens(nn.Module):
        """[B, 2 + 3*5, C]: a class token and a register token, then a 3x5 grid."""

        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(3, 6, 1)
            self.out = nn.Identity()

        def forward(self, x):
            t = self.proj(x).flatten(2).transpose(1, 2)  # [B, 15, 6]
            lead = t.mean(1, keepdim=True)
            return self.out(torch.cat([lead, -lead, t], 1))

    model = Tokens().eval()
    x = torch.randn(2, 3, 3, 5)
    with pytest.raises(LayerError, match=r"say --layout out=tokens:skip=K\[:grid=HxW\] if it "
                                         r"is \[B, tokens, channels\] with K leading"):
        capture(model, ["out"], x)
    maps, layouts = capture(model, ["out"], x, layouts={"out": "tokens:skip=2:grid=3x5"})
    assert str(layouts["out"]) == "tokens:skip=2:grid=3x5"
    assert torch.equal(maps["out"], model.proj(x))  # exactly the grid the tokens came from
    with pytest.raises(LayerError, match="is 16, not grid 4x5"):
        capture(model, ["out"], x, layouts={"out": "tokens:skip=1:grid=4x5"})
    with pytest.raises(LayerError, match="is 15, not a square grid"):
        capture(model, ["out"], x, layouts={"out": "tokens:skip=2"})


def test_patterns_overrides_and_priority():
    model = swin()
    x = torch.randn(1, 3, 32, 32)
    # a user's --layout beats recognition (here wrongly, on purpose: the maps are transposed)
    maps, layouts = capture(model, ["features.1"], x, layouts={"features.*": "nchw"})
    assert str(layouts["features.1"]) == "nchw"
    assert torch.equal(maps["features.1"], raw_output(model, "features.1", x))
    decl = declared_layouts(model, ["features.1", "head"], {"features.1": "nhwc"},
                            {"features.*": "nchw", "head": "vector"})
    assert str(decl["features.1"]) == "nhwc" and str(decl["head"]) == "vector"


def test_undecidable_layouts_are_refused_with_a_hint():
    class ViTLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, 4)
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.block = nn.Linear(8, 8)
            self.channels_last = nn.Linear(8, 8)

        def forward(self, x):
            p = self.embed(x)  # [B, 8, 14, 14]
            t = torch.cat([self.cls.expand(len(x), -1, -1), p.flatten(2).transpose(1, 2)], 1)
            t = self.block(t)  # [B, 197, 8]
            return self.channels_last(p.permute(0, 2, 3, 1))  # [B, 14, 14, 8]

    model = ViTLike().eval()
    x = torch.randn(2, 3, 56, 56)
    with pytest.raises(LayerError, match=r"layer 'block' outputs \[2, 197, 8\], whose layout is "
                                         r"not declared; say --layout block=tokens:skip=K.*"
                                         r"\(e.g. tokens:skip=1: 197 = 1 \+ 14x14\)"):
        capture(model, ["block"], x)
    with pytest.raises(LayerError, match=r"channels may be last; say --layout "
                                         r"channels_last=nhwc"):
        capture(model, ["channels_last"], x)
    maps, _ = capture(model, ["block", "channels_last"], x,
                      layouts={"block": "tokens:skip=1", "channels_last": "nhwc"})
    assert maps["block"].shape == (2, 8, 14, 14) and maps["channels_last"].shape == (2, 8, 14, 14)
    with pytest.raises(LayerError, match="does not fit layout nhwc"):
        capture(model, ["block"], x, layouts={"block": "nhwc"})


def test_modules_that_cannot_be_dissected_are_refused():
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(LayerError, match="returns a tuple"):
        capture(vit(), ["encoder.layers.encoder_layer_0.self_attention"], x)
    with pytest.raises(LayerError, match="window attention"):
        capture(swin(v2=True), ["features.1.0.attn.cpb_mlp"], x)  # [1, 3, 3, heads]
    with pytest.raises(LayerError, match="partitioned windows"):
        capture(maxvit(), ["blocks.0.layers.0.layers.window_attention.mlp_layer"], x)

    class NoBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Linear(2, 4)

        def forward(self, x):
            return x + self.table(torch.zeros(1, 2)).sum()

    with pytest.raises(LayerError, match="first axis is not the batch"):
        capture(NoBatch(), ["table"], x)


def test_parse_layout():
    assert parse_layout("tokens:skip=1:grid=14x14") == Layout("tokens", 1, (14, 14))
    assert parse_layout(" NHWC ") == Layout("nhwc")
    assert str(parse_layout("tokens:grid=7")) == "tokens:grid=7x7"
    for bad in ("nhcw", "tokens:skip=x", "tokens:depth=2", "nhwc:skip=1", "tokens:skip=-1"):
        with pytest.raises(NdcoreError):
            parse_layout(bad)
    assert parse_layout_options(["a.b=tokens:skip=1", "c=vector"]) == {
        "a.b": "tokens:skip=1", "c": "vector"}
    with pytest.raises(NdcoreError, match="--layout 'c'"):
        parse_layout_options(["c"])


# -- edits see NCHW, whatever the layout ------------------------------------------------------


def test_edits_see_nchw_and_write_back_into_the_native_layout():
    model = vit()
    x = torch.randn(2, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_0"
    seen = {}

    def ablate(maps):
        seen["shape"] = tuple(maps.shape)
        maps = maps.clone()
        maps[:, 3] = 0
        return maps

    with torch.no_grad(), LayerCapture(model, [layer, "encoder.layers.encoder_layer_1"],
                                       edits={layer: ablate}) as cap:
        maps = cap(x)
        logits = cap.output
    assert seen["shape"] == (2, 16, 4, 4)
    assert (maps[layer][:, 3] == 0).all() and (maps[layer][:, 2] != 0).any()
    # the class token is untouched and the rest of the model ran on the edited tokens
    y = raw_output(model, layer, x)
    edited = y.clone()
    edited[:, 1:, 3] = 0
    with torch.no_grad():
        expected = model.heads(model.encoder.ln(model.encoder.layers[1](edited))[:, 0])
    torch.testing.assert_close(logits, expected)

    def zero_in_place(maps):  # an in-place edit on the NCHW view of a channels-last output
        maps[:, 0] = 0

    model = swin()
    with torch.no_grad(), LayerCapture(model, ["features.1"],
                                       edits={"features.1": zero_in_place}) as cap:
        maps = cap(x)
    assert (maps["features.1"][:, 0] == 0).all() and cap.output.shape == (2, 10)


# -- whole dissections: a raw layer gives exactly the tally of its hand rearrangement ------------


class Upto(nn.Module):
    """Runs a model up to a layer and outputs that layer's output rearranged by hand."""

    def __init__(self, model, layer, hand):
        super().__init__()
        self.model, self.layer, self.hand = model, layer, hand
        self.out = nn.Identity()

    def forward(self, x):
        y = raw_output(self.model, self.layer, x)
        return self.out(by_hand(y, *self.hand))


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = []
    for i in range(12):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        obj = np.zeros((16, 16), np.int32)
        obj[rng.integers(0, 8):, rng.integers(0, 8):] = 1 + i % 2
        images.append({"image": img, "planes": {"object": [obj]},
                       "image_labels": {"scene": [3 + i % 3]}})
    labels = [(1, "a", {"object": 1.0}), (2, "b", {"object": 1.0}), (3, "s1", {"scene": 1.0}),
              (4, "s2", {"scene": 1.0}), (5, "s3", {"scene": 1.0})]
    return write_broden(tmp_path_factory.mktemp("layouts"), ["object", "scene"], labels, images)


@pytest.mark.parametrize("build,layer,hand", [
    (swin, "features.1", ("nhwc",)),
    (vit, "encoder.layers.encoder_layer_1", ("tokens", 1, (4, 4))),
    (vit, "heads.head", ("vector",)),
], ids=["swin-nhwc", "vit-tokens", "vit-vector"])
def test_dissection_of_raw_layer_equals_hand_rearranged(probe, build, layer, hand):
    model = build()
    pre = Preprocess((0, 0, 0), (255, 255, 255))
    opts = dict(batch_size=5, quantile=0.05, workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 images: too few values per unit, by design
        raw = run_dissection(ModelAdapter("raw", model, pre), [layer], BrodenDataset(probe), **opts)
        hand_made = run_dissection(ModelAdapter("hand", Upto(model, layer, hand), pre), ["out"],
                                   BrodenDataset(probe), **opts)
    a, b = raw[layer], hand_made["out"]
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert set(a.counts) == set(b.counts)
    for key in a.counts:
        np.testing.assert_array_equal(a.counts[key], b.counts[key], err_msg=key)
    np.testing.assert_array_equal(a.topk["maps"], b.topk["maps"])
    assert a.num_units == model_units(layer)


def model_units(layer):
    return {"features.1": 8, "encoder.layers.encoder_layer_1": 16, "heads.head": 10}[layer]


def test_vector_and_small_maps_warn_at_dissection_time(probe):
    model = vit()
    pre = Preprocess((0, 0, 0), (255, 255, 255))
    with pytest.warns(UserWarning) as record:
        run_dissection(ModelAdapter("raw", model, pre), ["heads.head"], BrodenDataset(probe),
                       batch_size=6, workers=0)
    text = " ".join(str(w.message) for w in record)
    assert "is a vector layer" in text and "whole image" in text
    assert "12 images x 1x1 = 12 values per unit" in text and "at least 4000 images" in text
    assert map_notes("l", Layout("nchw"), (14, 14), images=2000, quantile=0.005) == []
    assert "1x1 maps" in map_notes("l", Layout("nchw"), (1, 1))[0]


def test_layout_option_is_checked_before_any_work(probe):
    pre = Preprocess((0, 0, 0), (255, 255, 255))
    with pytest.raises(NdcoreError, match="--layout names layer 'features.3'"):
        run_dissection(ModelAdapter("s", swin(), pre), ["features.1"], BrodenDataset(probe),
                       layouts={"features.3": "nhwc"})
    with pytest.raises(NdcoreError, match="--layout features.1=nwhc"):
        run_dissection(ModelAdapter("s", swin(), pre), ["features.1"], BrodenDataset(probe),
                       layouts={"features.1": "nwhc"})


# -- ndcore layers ------------------------------------------------------------------------------


def test_describe_layers_shows_layouts_units_and_flags():
    rows = {r.name: r for r in describe_layers(swin(), (32, 32), quantile=0.005)}
    r = rows["features.1"]
    assert r.shape == (1, 8, 8, 8) and str(r.layout) == "nhwc" and r.units == 8
    assert r.map_size == (8, 8)
    assert rows["head"].note.startswith("1x1: whole-image masks")
    assert not rows["features.1.0.attn.qkv"].dissectable  # never runs as a module
    rows = {r.name: r for r in describe_layers(vit(), (32, 32), quantile=0.005)}
    assert str(rows["encoder.layers.encoder_layer_1"].layout) == "tokens:skip=1:grid=4x4"
    assert rows["encoder.layers.encoder_layer_1"].note == "few pixels: needs >= 250 images"
    assert rows["conv_proj"].note == "few pixels: needs >= 250 images"
    assert "returns a tuple" in rows["encoder.layers.encoder_layer_0.self_attention"].problem
    rows = {r.name: r for r in describe_layers(swin(), (64, 64), quantile=0.005)}
    assert rows["features.1"].note == "" and rows["features.3"].note == ""  # 16x16, 8x8


def test_layers_command_swin():
    res = subprocess.run([sys.executable, "-m", "ndcore", "layers", "torchvision:swin_t",
                          "--input-size", "64"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(l for l in res.stdout.splitlines() if l.startswith("│ features.1 "))
    assert "[1, 16, 16, 96]" in line and "nhwc" in line and " 96 " in line and "16x16" in line
    head = next(l for l in res.stdout.splitlines() if l.startswith("│ head "))
    assert "vector" in head and "1x1: whole-image masks" in head


def test_user_layout_beats_the_adapters_even_by_pattern():
    from ndcore.data.probe import ProbeBatch
    from ndcore.engine.forward import ModelRunner

    model = swin()
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    batch = ProbeBatch(torch.arange(2), images, torch.zeros(2, 0, 8, 8, dtype=torch.int32),
                       torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 1, dtype=torch.bool))
    adapter = ModelAdapter("s", model, Preprocess((0, 0, 0), (255, 255, 255)),
                           layouts={"features.1": "nchw", "features.3": "nchw"})
    runner = ModelRunner(adapter, torch.device("cpu"), layouts={"features.*": "nhwc"})
    with runner.capturing(["features.1", "features.3"]) as run:
        maps = run(batch)
    assert runner.layouts == {"features.1": "nhwc", "features.3": "nhwc"}
    assert maps["features.3"].shape == (2, 16, 4, 4)
    runner = ModelRunner(adapter, torch.device("cpu"))  # the adapter's beat recognition
    with runner.capturing(["features.3"]) as run:
        assert run(batch)["features.3"].shape == (2, 4, 4, 16)


def test_undecidable_layout_stops_before_any_file(probe, tmp_path):
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 4, 8, 8)
            self.blocks = nn.Identity()

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)  # [B, 16, 4]
            return self.blocks(torch.cat([t.mean(1, keepdim=True), t], 1))

    pre = Preprocess((0, 0, 0), (255, 255, 255))
    out = tmp_path / "run"
    with pytest.raises(LayerError, match="say --layout blocks=tokens:skip=K"):
        run_dissection(ModelAdapter("t", Tokens(), pre), ["blocks"], BrodenDataset(probe), out)
    assert not out.exists()
    from ndcore.engine import Dissection, DissectOptions

    run = Dissection(ModelAdapter("t", Tokens(), pre), ["blocks", "embed"], BrodenDataset(probe),
                     DissectOptions(layouts={"blocks": "tokens:skip=1"}))
    assert run.layouts == {"blocks": "tokens:skip=1", "embed": "nchw"}
