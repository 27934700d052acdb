"""The run options have one source: DissectOptions' fields give `ndcore dissect` its flags,
defaults and help, and an options object is checked when it is made."""

import argparse
import sys
from dataclasses import fields, replace

import pytest

from ndcore.cli import dissect
from ndcore.engine.options import COMMAND_LINE_WORKERS, DissectOptions
from ndcore.errors import NdcoreError

REQUIRED = ["dissect", "--model", "m", "--layers", "l", "--out", "o"]


def dissect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndcore")
    dissect.register(parser.add_subparsers())
    return parser


def flagged():
    return [(f, f.metadata["flag"]) for f in fields(DissectOptions) if "flag" in f.metadata]


def test_every_flag_is_built_from_its_option():
    sub = dissect_parser()._subparsers._group_actions[0].choices["dissect"]
    actions = {a.dest: a for a in sub._actions}
    assert {f.name for f, _ in flagged()} <= set(actions)
    for f, flag in flagged():
        action = actions[f.name]
        assert action.option_strings == [flag.name] and action.help == flag.help
        if flag.action is None:
            expected = None if flag.command_line_default is not None else f.default
            assert action.default == expected and action.choices == flag.choices, f.name
    # the flags of today, by name (a renamed flag breaks users' commands)
    assert [flag.name for _, flag in flagged()] == [
        "--union", "--quantile", "--cutoff", "--categories", "--thresholds", "--quantile-on",
        "--batch-size", "--device", "--workers", "--topk", "--max-images", "--second-pass",
        "--cache-dir", "--cache-memory-mb", "--checkpoint-every", "--overwrite", "--precision",
        "--threshold", "--layout", "--compile", "--rotate", "--rotate-alpha", "--rotate-seed",
        "--null-permutations", "--bootstrap", "--resample-seed", "--fdr"]


def test_no_flags_give_the_default_options():
    args = dissect_parser().parse_args(REQUIRED)
    assert dissect._options(args) == replace(DissectOptions(), workers=COMMAND_LINE_WORKERS)
    assert DissectOptions().quantile == 0.005 and DissectOptions().cutoff == 0.04


def test_flags_reach_the_options():
    args = dissect_parser().parse_args(REQUIRED + [
        "--quantile", "0.01", "--thresholds", "a=x.npy", "--layout", "a=NHWC",
        "--categories", "object, part", "--compile", "--workers", "0", "--union", "lite",
        "--checkpoint-every", "5"])
    opts = dissect._options(args)
    assert (opts.quantile, opts.thresholds, opts.layouts) == (0.01, {"a": "x.npy"}, {"a": "nhwc"})
    assert (opts.categories, opts.compile, opts.workers) == (["object", "part"], True, 0)
    assert (opts.union, opts.checkpoint_every) == ("lite", 5.0)


def test_options_are_checked_once_when_made():
    with pytest.raises(NdcoreError, match=r"^--quantile 1.5: must lie strictly between 0 and 1$"):
        DissectOptions(quantile=1.5)
    with pytest.raises(NdcoreError, match="--second-pass cache cannot serve it"):
        DissectOptions(threshold="best-iou", second_pass="cache")
    with pytest.raises(NdcoreError, match=r"^--layout a=nwhc: layout 'nwhc'"):
        DissectOptions(layouts={"a": "nwhc"})
    with pytest.raises(NdcoreError, match=r"^--precision 'fp8': choose one of fp32, bf16, fp16$"):
        replace(DissectOptions(), precision="fp8")
    with pytest.raises(AttributeError):  # frozen: a checked object stays checked
        DissectOptions().quantile = 2.0


def test_the_command_line_builds_its_flags_without_torch():
    import subprocess

    code = "import sys, ndcore.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rotation_flags_reach_the_options():
    args = dissect_parser().parse_args(REQUIRED + [
        "--rotate", "layer3", "--rotate", "layer4", "--rotate-alpha", "0, 0.5,1",
        "--rotate-seed", "7"])
    opts = dissect._options(args)
    assert (opts.rotate, opts.rotate_alpha, opts.rotate_seed) == (
        ["layer3", "layer4"], (0.0, 0.5, 1.0), 7)
    assert list(opts.derived_layers()) == [
        "layer3@rot0", "layer3@rot0.5", "layer3@rot1", "layer4@rot0", "layer4@rot0.5",
        "layer4@rot1"]
