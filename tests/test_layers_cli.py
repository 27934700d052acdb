"""``ndcore layers`` piped and for scripts: full-width table, ``--format tsv|json``, and no
claim of ``--random-init`` the user never made (issue 21, item 8)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import torch
import torchvision

from ndcore.cli.layers import TSV_COLUMNS


def _layers(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["NDCORE_CACHE"] = str(tmp_path / "cache")
    return subprocess.run([sys.executable, "-m", "ndcore", "layers", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_piped_table_keeps_every_column_and_claims_no_random_init(tmp_path):
    res = _layers("torchvision:resnet18", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # the user passed no --random-init, and random weights do not change the shapes listed
    assert "random" not in (res.stdout + res.stderr).lower()
    header = next(l for l in res.stdout.splitlines() if "layer" in l and "units" in l)
    assert "map" in header and "dissectable" in header, header
    conv1 = next(l for l in res.stdout.splitlines() if l.startswith("│ conv1 "))
    assert "[1, 64, 112, 112]" in conv1 and "112x112" in conv1 and "yes" in conv1, conv1
    assert max(len(l) for l in res.stdout.splitlines()) > 80  # not folded to 80 columns


def test_tsv_and_json_formats(tmp_path):
    res = _layers("demo", "--format", "tsv", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split("\t") == list(TSV_COLUMNS)
    rows = {r[0]: r for r in (l.split("\t") for l in lines[1:])}
    assert all(len(r) == len(TSV_COLUMNS) for r in rows.values())
    assert rows["conv5"][1:7] == ["Sequential", "1,128,14,14", "nchw", "128", "14x14", "yes"]
    assert rows["fc"][6:] == ["yes", "1x1: whole-image masks"]
    assert all(" " not in cell for r in rows.values() for cell in r[:-1])  # awk-safe
    res = _layers("demo", "--format", "json", tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    records = {r["layer"]: r for r in json.loads(res.stdout)}
    assert records["conv5"] == {"layer": "conv5", "type": "Sequential",
                                "output_shape": [1, 128, 14, 14], "layout": "nchw",
                                "units": 128, "map": [14, 14], "dissectable": True,
                                "note": None, "problem": None}
    assert list(records) == [r[0] for r in (l.split("\t") for l in lines[1:])]


def test_weights_are_loaded_and_checked(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    res = _layers("torchvision:resnet18", "--weights", str(path), "--weights-sha256",
                  "0123456789", "--format", "tsv", tmp_path=tmp_path)
    assert res.returncode == 2 and res.stdout.startswith(
        f"error: {path}: sha256 mismatch: expected 0123456789... (--weights-sha256)"), res.stdout
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    res = _layers("torchvision:resnet18", "--weights", str(path), "--weights-sha256", sha,
                  "--format", "tsv", tmp_path=tmp_path)
    assert res.returncode == 0 and "\nlayer4\tSequential\t1,512,7,7\t" in res.stdout, res.stdout
    assert "random" not in res.stderr.lower()
