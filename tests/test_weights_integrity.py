"""Weights files are checked before they are loaded: a sha256 prefix in the file's name
(torch.hub's convention, ``resnet18-f37072fd.pth``) or ``--weights-sha256`` / ``weights_sha256=``;
truncated files and directories are refused with one line naming the file (issue 21, item 3)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import ndcore
from ndcore.errors import NdcoreError
from ndcore.hookspecs import hookimpl
from ndcore.models import ModelAdapter, sha256_of
from ndcore.plugins import get_plugin_manager
from ndcore.specs import resolve_model

R18 = "torchvision:resnet18"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict:
    """A real ResNet-18 state dict, and a copy with 1,000 bytes flipped inside one tensor."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    good = folder / "r18.pth"
    torch.save(state, good)
    data = bytearray(good.read_bytes())
    # the tensor's bytes are stored uncompressed in the zip: find them and flip 1,000 of them
    tensor = state["layer4.1.conv2.weight"]
    start = bytes(data).find(tensor.numpy().tobytes()[:256])
    assert start > 0
    for i in range(start + 4096, start + 4096 + 1000):
        data[i] ^= 0x5A
    bad = folder / "r18-flipped.pth"
    bad.write_bytes(bytes(data))
    return {"good": good, "bad": bad, "sha": _sha(good), "state": state}


def _named(folder: Path, source: Path, prefix: str) -> Path:
    """``source`` under a torchvision-style release name carrying ``prefix``."""
    path = folder / f"resnet18-{prefix}.pth"
    shutil.copyfile(source, path)
    return path


def test_flipped_bytes_load_unless_a_hash_is_known(weights, tmp_path):
    # Nothing in the file says it is damaged: without a hash it loads (and would run).
    adapter = resolve_model(R18, weights=str(weights["bad"]))
    changed = adapter.module.state_dict()["layer4.1.conv2.weight"]
    assert not torch.equal(changed, weights["state"]["layer4.1.conv2.weight"])
    # Named as torchvision names its release files, it is refused before it is loaded ...
    named = _named(tmp_path, weights["bad"], weights["sha"][:8])
    with pytest.raises(NdcoreError) as info:
        resolve_model(R18, weights=str(named))
    message = str(info.value)
    found = _sha(weights["bad"])[:8]
    assert message.startswith(f"{named}: sha256 mismatch: expected {weights['sha'][:8]}... "
                              f"(its file name), the file has {found}...")
    assert "\n" not in message
    # ... and so it is under any name when the expected sha256 is given.
    for given in (weights["sha"], weights["sha"][:8], weights["sha"][:12].upper()):
        with pytest.raises(NdcoreError, match=r"r18-flipped.pth: sha256 mismatch: expected "
                                              rf"{given.lower()}(\.\.\.)? \(--weights-sha256\)"):
            resolve_model(R18, weights=str(weights["bad"]), weights_sha256=given)


def test_matching_hashes_load_and_are_recorded(weights, tmp_path):
    named = _named(tmp_path, weights["good"], weights["sha"][:10])
    adapter = resolve_model(R18, weights=str(named))
    assert adapter.weights_sha256 == weights["sha"] == sha256_of(named)
    adapter = resolve_model(R18, weights=str(weights["good"]),
                            weights_sha256="sha256:" + weights["sha"].upper())
    assert adapter.weights_sha256 == weights["sha"]
    assert torch.equal(adapter.module.conv1.weight, weights["state"]["conv1.weight"])


def test_a_given_hash_overrides_digits_in_the_name(weights, tmp_path):
    """A date is no hash: the name's check is refused, with the way out in the message."""
    dated = tmp_path / "ckpt-20240101.pth"
    shutil.copyfile(weights["good"], dated)
    with pytest.raises(NdcoreError, match=r"expected 20240101\.\.\. \(its file name\).*give "
                                          r"--weights-sha256"):
        resolve_model(R18, weights=str(dated))
    assert resolve_model(R18, weights=str(dated), weights_sha256=weights["sha"][:8]).weights_sha256


def test_names_without_a_hash_are_not_checked(weights, tmp_path):
    for name in ("resnet18-places365.pth", "model-beef.pth", "resnet18.pth"):
        path = tmp_path / name
        shutil.copyfile(weights["good"], path)
        assert resolve_model(R18, weights=str(path)).weights_sha256 == weights["sha"]


def test_bad_sha256_values(weights):
    for value in ("xyz", "abc", "f" * 65, ""):
        if not value:
            continue  # an empty value means "not given"
        with pytest.raises(NdcoreError, match=r"--weights-sha256 '.*': expected the weights "
                                              r"file's sha256 \(8 to 64 hex digits"):
            resolve_model(R18, weights=str(weights["good"]), weights_sha256=value)
    with pytest.raises(NdcoreError, match="--weights-sha256: checks the file that --weights names"):
        resolve_model("demo", weights_sha256=weights["sha"])


def test_truncated_file_and_directory_are_one_line(weights, tmp_path):
    data = weights["good"].read_bytes()
    for cut in (100, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(NdcoreError) as info:
            resolve_model(R18, weights=str(path))
        # torch's own text ends in advice and was cut mid-sentence at 200 characters
        assert str(info.value) == (f"{path}: cannot read the weights (truncated or corrupt "
                                   "PyTorch file: failed finding central directory)")
    legacy = tmp_path / "legacy.pth"
    torch.save(weights["state"], legacy, _use_new_zipfile_serialization=False)
    (tmp_path / "legacy-cut.pth").write_bytes(legacy.read_bytes()[:legacy.stat().st_size // 2])
    with pytest.raises(NdcoreError, match=r"legacy-cut.pth: cannot read the weights \(truncated "
                                          r"or corrupt PyTorch file: unexpected EOF, expected "
                                          r"\d+ more bytes\)$"):
        resolve_model(R18, weights=str(tmp_path / "legacy-cut.pth"))
    folder = tmp_path / "resnet18.pth"
    folder.mkdir()
    with pytest.raises(NdcoreError, match=r"resnet18.pth: is a directory, not a weights file"):
        resolve_model(R18, weights=str(folder))
    with pytest.raises(NdcoreError, match=r"nope.pth: weights file not found"):
        resolve_model(R18, weights=str(tmp_path / "nope.pth"))


class _SelfLoadingPlugin:
    """A third-party model that loads --weights itself, not through apply_weights."""

    @hookimpl
    def ndcore_register_models(self, register):
        def build(target, request):
            module = nn.Linear(2, 2)
            module.load_state_dict(torch.load(request.weights, weights_only=True))
            return ModelAdapter(f"selfload:{target}", module, weights=request.weights)

        register("selfload", build, description="test model")


def test_plugins_that_load_weights_themselves_are_checked(tmp_path):
    pm = get_plugin_manager()
    pm.register(_SelfLoadingPlugin(), name="selfload-test")
    try:
        path = tmp_path / "linear.pth"
        torch.save(nn.Linear(2, 2).state_dict(), path)
        sha = _sha(path)
        assert resolve_model("selfload:x", weights=str(path), weights_sha256=sha[:8])
        with pytest.raises(NdcoreError, match=r"linear.pth: sha256 mismatch: expected 00000000"):
            resolve_model("selfload:x", weights=str(path), weights_sha256="0" * 8)
        named = tmp_path / "linear-00000000.pth"
        shutil.copyfile(path, named)
        with pytest.raises(NdcoreError, match=r"\(its file name\)"):
            resolve_model("selfload:x", weights=str(named))
    finally:
        pm.unregister("selfload-test")


def test_python_api_takes_weights_sha256(weights):
    # refused before the dataset is opened: the model is resolved first
    with pytest.raises(NdcoreError, match=r"r18.pth: sha256 mismatch: expected deadbeef"):
        ndcore.dissect(R18, ["layer4"], "broden:/nonexistent", weights=str(weights["good"]),
                       weights_sha256="deadbeef")
    with pytest.raises(NdcoreError, match=r"r18.pth: sha256 mismatch: expected deadbeef"):
        ndcore.dissect_generator(R18, ["layer4"], "colors", weights=str(weights["good"]),
                                 weights_sha256="deadbeef")


def test_dissect_command_line(weights, tmp_path):
    env = dict(os.environ, NDCORE_CACHE=str(tmp_path / "cache"), COLUMNS="200")
    res = subprocess.run(
        [sys.executable, "-m", "ndcore", "dissect", "--model", R18, "--weights",
         str(weights["bad"]), "--weights-sha256", weights["sha"][:16], "--layers", "layer4",
         "--dataset", f"broden:{tmp_path / 'missing'}", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {weights['bad']}: sha256 mismatch: "
                                                   f"expected {weights['sha'][:16]}... "
                                                   "(--weights-sha256)"), res.stdout
    assert not (tmp_path / "run").exists()
