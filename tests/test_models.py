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


def test_capture_copies_only_the_layers_changed_later_and_notices_new_changes():
    class Sometimes(torch.nn.Module):
        """ReLUs its input in place only from the third call on."""
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x.relu_() if self.calls >= 3 else x * 1.0

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(inplace=True),
                                torch.nn.Conv2d(4, 4, 1), Sometimes(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        before_relu = model[0](x).clone()
        before_sometimes = model[2](model[1](model[0](x).clone())).clone()
        model[3].calls = 0
        fed = []  # what layer 2 reads: layer 1's output
        model[2].register_forward_pre_hook(lambda m, inputs: fed.append(inputs[0].data_ptr()))
        with LayerCapture(model, ["0", "1", "2", "4"], stop_early=False) as cap:
            for call in range(1, 5):
                out = cap(x)
                torch.testing.assert_close(out["0"], before_relu)  # changed later: copied
                torch.testing.assert_close(out["2"], before_sometimes)
                assert out["4"].data_ptr() != cap.output.data_ptr()  # the result: copied
                # layer 1 is never changed after it: copied on the first call only
                assert (out["1"].data_ptr() == fed[-1]) == (call >= 2)
    assert (before_relu < 0).any() and (before_sometimes < 0).any()  # premises
    assert model[3].calls == 5  # the third call found layer 2 changed and ran again
    assert cap._must_copy == {"0", "2", "4"}


# -- weights of transformer-era torchvision models, checkpoint wrappers, bad files --------------


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["vit_b_16",
                                  pytest.param("swin_t", marks=pytest.mark.slow),
                                  pytest.param("convnext_tiny", marks=pytest.mark.slow)])
def test_torchvision_transformer_weights(tmp_path, name):
    import torchvision

    torch.manual_seed(3)
    source = torchvision.models.get_model(name, weights=None)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    adapter = resolve_model(f"torchvision:{name}", weights=str(path))
    assert _same_weights(source, adapter.module)


SMALL_FACTORIES = '''
import torch
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

def vit():
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=10)

def swin():
    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2], num_heads=[2, 2],
                           window_size=[2, 2], num_classes=10)

def convnext():
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=10)
'''


def _wrapped(state):
    import argparse

    import numpy as np

    return {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {"lr": 0.1}, "epoch": 7,
                  "args": argparse.Namespace(lr=0.1), "best": np.float64(0.5)},  # torchvision refs
        "model_state_dict": {"model_state_dict": state, "optimizer_state_dict": {}},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "compiled_prefix": {f"_orig_mod.{k}": v for k, v in state.items()},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in state.items()},
                      "global_step": 10},
        "nested": {"model": {"state_dict": {f"module.{k}": v for k, v in state.items()}}},
        "lightning_compiled": {"state_dict": {f"model._orig_mod.{k}": v for k, v in state.items()}},
    }


@pytest.mark.parametrize("family", ["vit", "swin", "convnext"])
def test_checkpoint_wrappers_for_each_family(tmp_path, family):
    """Each wrapper is opened, for a ViT, a Swin and a ConvNeXt (torchvision's classes)."""
    (tmp_path / "small.py").write_text(SMALL_FACTORIES)
    spec = f"python:{tmp_path / 'small.py'}:{family}"
    torch.manual_seed(5)
    source = resolve_model(spec).module
    for wrapper, content in _wrapped(source.state_dict()).items():
        path = tmp_path / f"{family}-{wrapper}.pth"
        torch.save(content, path)
        torch.manual_seed(6)  # a different init, so that loading must change every weight
        adapter = resolve_model(spec, weights=str(path))
        assert _same_weights(source, adapter.module), wrapper
        assert adapter.weights_sha256 == sha256_of(path)


def test_bad_weights_files_give_one_line_naming_the_file(tmp_path):
    import json

    import numpy as np
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None), tmp_path / "whole.pt")
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1}))
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "notes.txt").write_text("epoch 1 loss 0.5\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "nomodel.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    expected = {
        "whole.pt": r"whole.pt: holds a whole pickled model \(torchvision.models.resnet.ResNet\), "
                    r"not a state dict; .* save model.state_dict\(\) instead",
        "config.json": r"config.json: cannot load weights: not a PyTorch state dict file",
        "array.npy": r"array.npy: cannot load weights: not a PyTorch state dict file",
        "notes.txt": r"notes.txt: cannot load weights: not a PyTorch state dict file",
        "empty.pth": r"empty.pth: the file is empty or truncated",
        "nomodel.pth": r"nomodel.pth: holds a dict \(keys epoch, optimizer\) with no state dict",
        "list.pth": r"list.pth: expected a state dict, found list",
    }
    for name, pattern in expected.items():
        with pytest.raises(NdcoreError, match=pattern) as info:
            resolve_model("torchvision:resnet18", weights=str(tmp_path / name))
        message = str(info.value)
        assert "\n" not in message and "\x1b" not in message and len(message) < 400, name


def test_misfit_names_the_difference(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.weight"] = torch.zeros(10, 512)
    del state["fc.bias"]
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(NdcoreError, match=r"r18.pth: does not fit torchvision:resnet18: 1 missing "
                                          r"key\(s\) \(e.g. fc.bias\); 1 shape mismatch\(es\) "
                                          r"\(e.g. fc.weight: file \[10, 512\], model "
                                          r"\[1000, 512\]\)"):
        resolve_model("torchvision:resnet18", weights=str(tmp_path / "r18.pth"))
