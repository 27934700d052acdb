"""Mixed precision, channels-last and torch.compile: the maps the engine counts stay float32,
and the labels of planted units agree with float32 runs."""

import numpy as np
import pytest
import torch
from torch import nn

from broden_fixture import write_broden
from ndcore.api import run_dissection
from ndcore.data.broden import BrodenDataset
from ndcore.data.probe import ProbeBatch
from ndcore.engine.forward import ModelRunner
from ndcore.errors import NdcoreError
from ndcore.models import ModelAdapter, Preprocess

CATS = ["object", "scene"]
LABELS = [(1, "square", {"object": 1.0}), (2, "disk", {"object": 1.0}),
          (3, "indoor", {"scene": 1.0}), (4, "outdoor", {"scene": 1.0})]


def make_images(n: int, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = []
    for i in range(n):
        img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)  # noise: values to round
        obj = np.zeros((size, size), np.int32)
        x0, y0 = rng.integers(0, size - 12, 2)
        square = (xx >= x0) & (xx < x0 + 10) & (yy >= y0) & (yy < y0 + 10)
        cx, cy = rng.integers(6, size - 6, 2)
        disk = ((xx - cx) ** 2 + (yy - cy) ** 2 <= 25) & ~square
        obj[square], obj[disk] = 1, 2
        img[..., 0][square] = 200 + rng.integers(0, 50)
        img[..., 1][disk] = 200 + rng.integers(0, 50)
        indoor = i % 4 == 0
        img[..., 2] += np.uint8(180 if indoor else 0)
        images.append({"image": img, "planes": {"object": [obj]},
                       "image_labels": {"scene": [3 if indoor else 4]}})
    return images


class Planted(nn.Module):
    """Units 0-2 are the red, green and blue channels through a 1x1 conv (which autocast runs
    in bf16 / fp16), mixed a little so that low precision rounds; unit 3 is noise."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            w = torch.eye(4, 3) * 3.0 + 0.01 * torch.randn(4, 3)
            w[3] = torch.randn(3)
            self.conv.weight.copy_(w[:, :, None, None])
            self.conv.bias.copy_(0.01 * torch.randn(4))
        self.units = nn.Identity()

    def forward(self, x):
        return self.units(self.conv(x))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_broden(tmp_path_factory.mktemp("precision"), CATS, LABELS, make_images(48))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_labels_agree_with_fp32(planted, precision):
    adapter = ModelAdapter("planted", Planted(), Preprocess((0, 0, 0), (255, 255, 255)))
    opts = dict(quantile=0.08, batch_size=7, workers=0)
    ref = run_dissection(adapter, ["units"], BrodenDataset(planted), **opts)["units"]
    low = run_dissection(adapter, ["units"], BrodenDataset(planted), precision=precision,
                         **opts)["units"]
    expected = {0: "square", 1: "disk", 2: "indoor"}
    for unit, label in expected.items():
        assert ref.units[unit].label == label
        assert low.units[unit].label == label, (precision, unit, low.units[unit])
        assert abs(low.units[unit].iou - ref.units[unit].iou) < 0.1, (unit, low.units[unit])
    # the forward pass really ran in low precision: thresholds differ from fp32 by rounding
    assert not np.array_equal(low.thresholds, ref.thresholds)
    assert low.thresholds.dtype == np.float32


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_runner_counts_float32_copies_of_low_precision_maps(precision, dtype):
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=4)
    native = {}
    layer = vit.encoder.layers.encoder_layer_0.mlp
    layer.register_forward_hook(lambda m, i, o: native.update(dtype=o.dtype))
    runner = ModelRunner(ModelAdapter("vit", vit), torch.device("cpu"), precision=precision)
    batch = _batch(torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8))
    with runner.capturing(["encoder.layers.encoder_layer_0.mlp", "conv_proj"]) as run:
        maps = run(batch)
    assert native["dtype"] == dtype  # the model ran under autocast
    for m in maps.values():
        assert m.dtype == torch.float32 and m.is_contiguous()
    assert maps["encoder.layers.encoder_layer_0.mlp"].shape == (3, 16, 4, 4)
    assert runner.layouts["encoder.layers.encoder_layer_0.mlp"] == "tokens:skip=1:grid=4x4"


def test_capture_makes_the_float32_copy_in_the_hook():
    """LayerCapture(dtype=float32) under autocast: contiguous float32 NCHW maps, also for
    tokens, whose bf16 output stays untouched for the rest of the model."""
    from torchvision.models.vision_transformer import VisionTransformer

    from ndcore.capture import LayerCapture

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=4).eval()
    layers = ["encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_1.mlp.0"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), \
            LayerCapture(vit, layers, dtype=torch.float32) as cap:
        maps = cap(x)
    raw = {}
    hooks = [vit.encoder.layers[i].mlp[0].register_forward_hook(
        lambda m, i, o, k=k: raw.update({k: o.clone()})) for i, k in enumerate(layers)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        vit(x)
    for h in hooks:
        h.remove()
    for layer in layers:
        assert raw[layer].dtype == torch.bfloat16
        assert maps[layer].dtype == torch.float32 and maps[layer].is_contiguous()
        expected = raw[layer][:, 1:].float().reshape(2, 4, 4, 32).permute(0, 3, 1, 2)
        assert torch.equal(maps[layer], expected)


def test_fp16_overflow_is_named():
    class Huge(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1e5)

        def forward(self, x):
            return self.conv(x)

    runner = ModelRunner(ModelAdapter("huge", Huge()), torch.device("cpu"), precision="fp16")
    with runner.capturing(["conv"]) as run, pytest.raises(NdcoreError, match="--precision bf16"):
        run(_batch(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)))


def _batch(images):
    n = images.shape[0]
    return ProbeBatch(torch.arange(n), images, torch.zeros(n, 0, 4, 4, dtype=torch.int32),
                      torch.zeros(n, 0, dtype=torch.int64), torch.zeros(n, 1, dtype=torch.bool))


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3),
                         nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))


class Net(nn.Module):
    """Not a Sequential (a compiled module has no len(), nor truth value from it)."""

    def __init__(self):
        super().__init__()
        self.body = small_cnn()

    def forward(self, x):
        return self.body(x)


def _compare_with_eager(backend, layers_list):
    model = Net().eval()
    ran = []
    model.body[6].register_forward_hook(lambda *a: ran.append("head"))
    images = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    eager = ModelRunner(ModelAdapter("cnn", model), torch.device("cpu"))
    compiled = ModelRunner(ModelAdapter("cnn", model), torch.device("cpu"), compile=backend)
    for layers in layers_list:
        with eager.capturing(layers) as run:
            ref = run(_batch(images))
        ran.clear()
        for _ in range(2):  # the second call runs the compiled code
            with compiled.capturing(layers) as run:
                out = run(_batch(images))
        assert ran == [] or "body.6" in layers  # the early stop still ends the forward pass
        assert compiled.compiled is not None
        for layer in layers:
            torch.testing.assert_close(out[layer], ref[layer], rtol=1e-5, atol=1e-5)


def test_compile_gives_the_maps_of_eager():
    """Through TorchDynamo (hooks traced with the model, early stop), no code generation."""
    _compare_with_eager("aot_eager", [["body.0", "body.2"], ["body.4"]])


@pytest.mark.slow
def test_compile_inductor_gives_the_maps_of_eager():
    _compare_with_eager("inductor", [["body.0", "body.2"], ["body.6"]])


def test_channels_last_gives_the_maps_of_contiguous():
    model = small_cnn().eval()
    images = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    plain = ModelRunner(ModelAdapter("cnn", model), torch.device("cpu"), channels_last=False)
    with plain.capturing(["0", "4"]) as run:
        ref = {k: v.clone() for k, v in run(_batch(images)).items()}
    cl = ModelRunner(ModelAdapter("cnn", model), torch.device("cpu"), channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    with cl.capturing(["0", "4"]) as run:
        out = run(_batch(images))
    for layer in ref:
        assert out[layer].is_contiguous()
        torch.testing.assert_close(out[layer], ref[layer], rtol=1e-5, atol=1e-5)
    model.to(memory_format=torch.contiguous_format)
