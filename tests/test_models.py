"""Model adapters: torchvision with local weights, python factories, preprocessing, layers."""

import warnings

import pytest
import torch

from ndcore.api import resolve_model
from ndcore.capture import LayerCapture, layer_shapes
from ndcore.errors import NdcoreError, PluginError
from ndcore.models import NORMALIZE_PRESETS, parse_normalize, sha256_of


def test_torchvision_weights_with_module_prefix(tmp_path):
    torch.manual_seed(1)
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    adapter = resolve_model("torchvision:resnet18", weights=str(path))
    assert adapter.weights_sha256 == sha256_of(path)
    for (k, v), (k2, v2) in zip(source.state_dict().items(), adapter.module.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_torchvision_requires_weights_or_random_init():
    with pytest.raises(NdcoreError, match="--random-init"):
        resolve_model("torchvision:resnet18")
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        a = resolve_model("torchvision:resnet18", random_init=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = resolve_model("torchvision:resnet18", random_init=True)
    assert torch.equal(a.module.conv1.weight, b.module.conv1.weight)  # seeded: reproducible


def test_bad_weights_files(tmp_path):
    with pytest.raises(NdcoreError, match="weights file not found"):
        resolve_model("torchvision:resnet18", weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(NdcoreError, match="junk.pth: cannot load weights"):
        resolve_model("torchvision:resnet18", weights=str(tmp_path / "junk.pth"))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(NdcoreError, match="other.pth: does not fit torchvision:resnet18"):
        resolve_model("torchvision:resnet18", weights=str(tmp_path / "other.pth"))
    with pytest.raises(PluginError, match="did you mean: resnet18"):
        resolve_model("torchvision:resnet19", random_init=True)


def test_python_factory_from_file(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 2, 1)))\n"
        "def not_a_model():\n"
        "    return 42\n")
    adapter = resolve_model(f"python:{tmp_path / 'mynet.py'}:build")
    with LayerCapture(adapter.module, ["2.0"]) as cap:
        out = cap(torch.zeros(1, 3, 8, 8))
    assert out["2.0"].shape == (1, 2, 6, 6)
    with pytest.raises(PluginError, match="returned int, not an nn.Module"):
        resolve_model(f"python:{tmp_path / 'mynet.py'}:not_a_model")
    with pytest.raises(PluginError, match="has no callable 'missing'"):
        resolve_model(f"python:{tmp_path / 'mynet.py'}:missing")
    with pytest.raises(PluginError, match="python:<module-or-file.py>:<factory>"):
        resolve_model("python:justonename")


def test_normalize_presets_and_custom():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    nd = parse_normalize("netdissect")
    mean, std = NORMALIZE_PRESETS["netdissect"]
    assert torch.allclose(nd(images)[0, 0], torch.tensor((255 - mean[0]) / std[0]))
    custom = parse_normalize("127.5/127.5")
    assert torch.allclose(custom(images), torch.ones(1, 3, 2, 2))
    resized = parse_normalize("imagenet")
    resized.resize = (4, 6)
    assert resized(images).shape == (1, 3, 4, 6)
    with pytest.raises(NdcoreError, match="--normalize"):
        parse_normalize("1,2/0,1,1")


def test_layer_shapes_lists_nested_modules():
    adapter = resolve_model("demo")
    shapes = layer_shapes(adapter.module, (112, 112))
    assert shapes["conv5"] == (1, 128, 14, 14)
    assert shapes["conv1.0"] == (1, 32, 56, 56)  # nested: the conv inside block conv1
    from ndcore.demo.model import TASKS

    assert shapes["fc"] == (1, sum(len(v) for v in TASKS.values()))


def test_capture_stops_after_last_layer_and_removes_hooks():
    adapter = resolve_model("demo")
    calls = []
    adapter.module.fc.register_forward_hook(lambda *a: calls.append("fc"))
    with LayerCapture(adapter.module, ["conv2"]) as cap:
        cap(torch.zeros(1, 3, 32, 32))
    assert calls == []  # stopped before the head
    assert all(not m._forward_hooks for n, m in adapter.module.named_modules() if n == "conv2")


def test_capture_is_not_changed_by_later_inplace_ops():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(inplace=True),
                                torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 5, 5)
    with LayerCapture(model, ["0", "2"]) as cap:
        out = cap(x)
    expected = model[0](x)
    assert (expected < 0).any()
    torch.testing.assert_close(out["0"], expected)  # pre-ReLU values, as the conv produced them
