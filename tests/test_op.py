"""The compiled tally op (CPU and CUDA kernels) against the pure-PyTorch reference.

All counts must agree exactly, including pixels whose upsampled value equals the threshold; and
the CPU kernel, the CUDA kernel, the reference and the wrapper must reject the same inputs with
the same ValueError.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest
import torch
import torch.nn.functional as F

import ndcore.ops as ops
from ndcore.ops import extension_info, tally, tally_reference, upsample_bilinear
from op_harness import (CPU_KEYS, CUDA_KEYS, LOADED, SAME_DEVICE, assign, cuda, cuda_args,
                        expect_rejection, needs_ext, needs_gpu, needs_two_gpus, set_label,
                        to_device)

ROOT = Path(__file__).resolve().parent.parent


def make_case(
    n: int = 3,
    units: int = 5,
    h: int = 7,
    w: int = 7,
    planes: int = 3,
    sh: int = 28,
    sw: int = 28,
    num_labels: int = 40,
    num_categories: int = 4,
    quantile: float = 0.9,
    seed: int = 0,
) -> tuple:
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, units, h, w, generator=g).relu()
    thresholds = torch.zeros(units)
    if acts.numel():
        thresholds = torch.quantile(acts.transpose(0, 1).reshape(units, -1), quantile, dim=1)
    labels = torch.randint(0, num_labels, (n, planes, sh, sw), generator=g, dtype=torch.int32)
    label_category = torch.randint(-1, max(num_categories, 1), (num_labels,), generator=g)
    if num_categories == 0:
        label_category.fill_(-1)
    return acts, thresholds, labels, label_category, num_labels, num_categories


def run_op(args: tuple, device: str = "cpu") -> tuple:
    moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    return torch.ops.ndcore.tally(*moved)


def assert_same(got: tuple, want: tuple, what: str = "") -> None:
    for name, g, w in zip(("intersection", "area", "cat_hits"), got, want):
        assert g.dtype == torch.int64, f"{what} {name} dtype {g.dtype}"
        assert g.shape == w.shape, f"{what} {name} shape {tuple(g.shape)} != {tuple(w.shape)}"
        g, w = g.cpu(), w.cpu()
        if not torch.equal(g, w):
            diff = (g - w).abs()
            raise AssertionError(
                f"{what} {name} differs at {int((diff > 0).sum())} entries "
                f"(max |diff| {int(diff.max())}, total {int(w.sum())})"
            )


def check_against_reference(args: tuple, device: str = "cpu", what: str = "") -> tuple:
    want = tally_reference(*args)
    got = run_op(args, device)
    assert_same(got, want, what)
    return want


def exact_value_thresholds(acts: torch.Tensor, size: tuple, seed: int = 0) -> torch.Tensor:
    """Per unit, a value that occurs in its upsampled map: pixels equal to it must not count."""
    up = upsample_bilinear(acts, size).transpose(0, 1).reshape(acts.shape[1], -1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, up.shape[1], (up.shape[0],), generator=g)
    return up[torch.arange(up.shape[0]), idx].contiguous()


# ---------------------------------------------------------------------------- reference itself


def test_reference_upsample_matches_interpolate() -> None:
    g = torch.Generator().manual_seed(1)
    for h, w, sh, sw in [(7, 7, 112, 112), (14, 9, 112, 57), (56, 56, 112, 112), (9, 13, 5, 6)]:
        x = torch.randn(2, 3, h, w, generator=g)
        want = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        torch.testing.assert_close(upsample_bilinear(x, (sh, sw)), want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- extension loading


def test_extension_loaded_when_required() -> None:
    """CI sets NDCORE_REQUIRE_EXTENSION=1: a missing extension must fail the run there."""
    info = extension_info()
    if os.environ.get("NDCORE_REQUIRE_EXTENSION", "") not in ("", "0"):
        assert info["loaded"], f"extension not loaded: {info['error']}"
    assert set(info) == {"loaded", "error", "cuda", "openmp", "cuda_version"}


_FALLBACK_SNIPPET = """
import sys, warnings
sys.modules["ndcore._C"] = None  # makes `from ndcore import _C` raise ImportError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ndcore.ops as ops
assert not ops.extension_info()["loaded"], ops.extension_info()
assert any("falling back" in str(w.message) for w in caught), [str(w.message) for w in caught]
import torch
out = ops.tally(torch.rand(1, 2, 3, 3), torch.full((2,), 0.5), torch.ones(1, 1, 5, 5, dtype=torch.int32),
                torch.zeros(2, dtype=torch.int64), 2, 1)
assert out[1].shape == (1, 2)
hist = ops.iou_histogram(torch.rand(1, 2, 3, 3), torch.tensor([[0.1, 0.5], [0.2, 0.3]]),
                         torch.ones(1, 1, 5, 5, dtype=torch.int32), 2)
assert hist.shape == (2, 2, 2) and int(hist[:, 0].sum()) > 0
"""


@pytest.mark.parametrize("require", ["0", "1"])
def test_fallback_without_extension(require: str) -> None:
    env = {**os.environ, "NDCORE_REQUIRE_EXTENSION": require}
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_SNIPPET], env=env,
                          capture_output=True, text=True)
    if require == "1":
        assert proc.returncode != 0 and "is required" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------- CPU kernel


@needs_ext
@pytest.mark.parametrize("seed", range(4))
def test_random(seed: int) -> None:
    check_against_reference(make_case(seed=seed), what=f"seed {seed}")


@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        dict(h=1, w=1, sh=9, sw=9),  # 1x1 maps
        dict(h=28, w=28, sh=28, sw=28),  # same size: no upsampling
        dict(h=40, w=33, sh=17, sw=12),  # downsampling
        dict(h=5, w=11, sh=23, sw=64),  # non-square, non-integer scale
        dict(h=7, w=7, sh=112, sw=112, n=2, units=3),  # ResNet layer4 shape
        dict(planes=6),  # many planes
        dict(n=1, units=1),
        dict(num_categories=0),
        dict(sh=1, sw=1),
        dict(h=3, w=2, sh=1, sw=7),
        dict(num_labels=20000, num_categories=13000),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_shapes(shape: dict) -> None:
    check_against_reference(make_case(**shape), what=str(shape))


@needs_ext
@pytest.mark.parametrize("seed", range(3))
def test_threshold_equal_to_upsampled_values(seed: int) -> None:
    acts, _, labels, cats, nl, nc = make_case(h=5, w=6, sh=37, sw=29, units=8, seed=seed)
    thr = exact_value_thresholds(acts, (37, 29), seed)
    check_against_reference((acts, thr, labels, cats, nl, nc), what="thr = upsampled value")


@needs_ext
def test_threshold_equal_to_corner_values() -> None:
    """Corners equal to the threshold: float32 interpolation can round above the largest corner,
    so a kernel that skips cells with all corners <= T would miss those pixels."""
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(4, 16, 6, 6, generator=g) * 10
    thr = acts[0, :, 2, 3].clone()
    acts[:, :, 1:4, 1:5] = thr.view(1, -1, 1, 1)  # plateaus exactly at the threshold
    labels = torch.randint(0, 9, (4, 2, 41, 43), generator=g, dtype=torch.int32)
    cats = torch.randint(-1, 3, (9,), generator=g)
    want = check_against_reference((acts, thr, labels, cats, 9, 3), what="corner plateaus")
    # The adversarial part: some pixels inside the plateaus round above the threshold.
    up = upsample_bilinear(acts, (41, 43))
    assert bool((up > thr.view(1, -1, 1, 1)).any()) and int(want[1].sum()) > 0


@needs_ext
def test_rounding_above_largest_corner() -> None:
    """Constant cells at the threshold whose interpolation rounds above it count exactly."""
    values = torch.tensor([2.0652792, 7.8792787, 4.483253, 1.2345678, 0.3], dtype=torch.float32)
    for v in values:
        acts = torch.full((2, 3, 3, 4), float(v))
        acts[1] = acts[1] * 0.5
        thr = torch.full((3,), float(v))
        labels = torch.ones(2, 1, 50, 61, dtype=torch.int32)
        check_against_reference((acts, thr, labels, torch.zeros(2, dtype=torch.int64), 2, 1))


@needs_ext
def test_integer_maps_and_integer_thresholds() -> None:
    g = torch.Generator().manual_seed(5)
    acts = torch.randint(0, 4, (3, 6, 4, 4), generator=g).float()
    thr = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.5, -1.0])
    labels = torch.randint(0, 12, (3, 2, 29, 31), generator=g, dtype=torch.int32)
    cats = torch.randint(-1, 2, (12,), generator=g)
    check_against_reference((acts, thr, labels, cats, 12, 2), what="integer maps")


@needs_ext
@pytest.mark.parametrize("value", [0.0, 1.5, -2.0])
def test_constant_maps_equal_to_threshold(value: float) -> None:
    acts = torch.full((2, 4, 5, 5), value)
    thr = torch.full((4,), value)
    labels = torch.randint(0, 5, (2, 2, 16, 16), dtype=torch.int32)
    want = check_against_reference((acts, thr, labels, torch.zeros(5, dtype=torch.int64), 5, 1))
    assert int(want[1].sum()) == 0


@needs_ext
def test_negative_and_tiny_thresholds() -> None:
    g = torch.Generator().manual_seed(7)
    acts = torch.randn(3, 6, 6, 6, generator=g) * torch.tensor([1, 1e-39, 1e-44, 1e30, 1, 1]).view(1, -1, 1, 1)
    thr = torch.tensor([-0.5, 1e-39, 1.4e-45, 1e30, -1e-40, float("inf")])
    labels = torch.randint(0, 7, (3, 2, 25, 25), generator=g, dtype=torch.int32)
    check_against_reference((acts, thr, labels, torch.zeros(7, dtype=torch.int64), 7, 1))


@needs_ext
def test_empty_and_full_masks() -> None:
    acts, thr, labels, cats, nl, nc = make_case(units=4)
    empty = check_against_reference((acts, thr + 100.0, labels, cats, nl, nc), what="empty")
    assert int(empty[1].sum()) == 0
    full = check_against_reference((acts, thr - 100.0, labels, cats, nl, nc), what="full")
    assert bool((full[1] == labels.shape[2] * labels.shape[3]).all())


@needs_ext
def test_label_zero_everywhere_and_one_image_labels() -> None:
    acts, thr, labels, cats, nl, nc = make_case(n=4)
    zeros = torch.zeros_like(labels)
    got = check_against_reference((acts, thr, zeros, cats, nl, nc), what="label 0")
    assert int(got[0].sum()) == 0 and int(got[2].sum()) == 0
    only_first = zeros.clone()
    only_first[0] = labels[0]
    check_against_reference((acts, thr, only_first, cats, nl, nc), what="labels in image 0")


@needs_ext
def test_maps_with_nan() -> None:
    acts, thr, labels, cats, nl, nc = make_case(units=3)
    acts[0, 0, 2, 2] = float("nan")
    acts[1, 1] = float("nan")
    check_against_reference((acts, thr, labels, cats, nl, nc), what="NaN")


@needs_ext
def test_thread_count_does_not_change_results() -> None:
    for units in (1, 3, 40):  # few units split images; many units split units
        args = make_case(n=6, units=units, h=9, w=9, sh=56, sw=56, seed=units)
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = run_op(args)
            torch.set_num_threads(2)
            two = run_op(args)
        finally:
            torch.set_num_threads(before)
        assert_same(two, one, f"threads, {units} units")
        assert_same(one, tally_reference(*args), f"reference, {units} units")


@needs_ext
def test_empty_batches() -> None:
    for shape in (dict(n=0), dict(units=0), dict(planes=0), dict(sh=0), dict(sw=0)):
        check_against_reference(make_case(**shape), what=str(shape))


@needs_ext
def test_invalid_inputs_raise() -> None:
    acts, thr, labels, cats, nl, nc = make_case()
    with pytest.raises(ValueError, match="label values"):
        run_op((acts, thr, labels + nl, cats, nl, nc))
    with pytest.raises(ValueError, match="label_category"):
        run_op((acts, thr, labels, cats + nc + 1, nl, nc))
    with pytest.raises(ValueError, match="float32"):
        run_op((acts.double(), thr, labels, cats, nl, nc))
    with pytest.raises(ValueError, match="thresholds"):
        run_op((acts, thr[:-1], labels, cats, nl, nc))


# ---------------------------------------------------------------------------- validation
#
# One table of bad inputs, run against every implementation: each must raise ValueError with
# exactly the expected message (so the CPU kernel, the CUDA kernel, the reference and the wrapper
# reject the same inputs the same way). Devices other than the CPU are emulated with 'meta'
# tensors: the dispatcher sends a CPU/meta mix to the fake kernel, and `cpu_kernel` calls the CPU
# kernel itself whatever the devices.

NL, NC = 40, 4
T = "ndcore::tally: "


def valid_args() -> list:
    """A small valid case whose labels span exactly [0, 39] and categories [-1, 3]."""
    args = list(make_case(n=2, units=3, h=5, w=6, planes=2, sh=11, sw=13, num_labels=NL,
                          num_categories=NC))
    args[2][0, 0, 0, :2] = torch.tensor([0, NL - 1], dtype=torch.int32)
    args[3][:2] = torch.tensor([-1, NC - 1])
    return args


def set_category(value: int) -> Callable[[list], None]:
    def edit(a: list) -> None:
        a[3][5] = value
    return edit


# (id, edit of valid_args(), expected message). Values that must raise on every device.
BAD_VALUES = [
    ("label=num_labels", set_label(NL), T + "label values must lie in [0, 40), got [0, 40]"),
    ("negative label", set_label(-3), T + "label values must lie in [0, 40), got [-3, 39]"),
    ("int64 label 2**31+1", set_label(2**31 + 1, torch.int64),
     T + "label values must lie in [0, 40), got [0, 2147483649]"),
    ("int64 label wrapping to 5", set_label(2**32 + 5, torch.int64),
     T + "label values must lie in [0, 40), got [0, 4294967301]"),
    ("uint8 label 200", set_label(200, torch.uint8),
     T + "label values must lie in [0, 40), got [0, 200]"),
    ("int16 label -1", set_label(-1, torch.int16),
     T + "label values must lie in [0, 40), got [-1, 39]"),
    ("category=num_categories", set_category(NC),
     T + "label_category values must be -1 or lie in [0, 4), got [-1, 4]"),
    ("category -2", set_category(-2),
     T + "label_category values must be -1 or lie in [0, 4), got [-2, 3]"),
    ("float labels", assign(2, lambda a: a[2].float()),
     T + "labels must be an integer tensor (uint8, int8, int16, int32 or int64), got float32"),
    ("bool labels", assign(2, lambda a: a[2] > 0),
     T + "labels must be an integer tensor (uint8, int8, int16, int32 or int64), got bool"),
    ("num_labels 0", assign(4, 0),
     T + "num_labels must lie in [1, 2147483647] (label 0 = none), got 0"),
    ("num_labels 2**31", assign(4, 2**31),
     T + "num_labels must lie in [1, 2147483647] (label 0 = none), got 2147483648"),
    ("num_categories -1", assign(5, -1),
     T + "num_categories must lie in [0, 2147483647], got -1"),
    ("thresholds shape", assign(1, lambda a: a[1][:2]),
     T + "thresholds must have shape [3], got shape [2]"),
    ("label_category shape", assign(3, lambda a: a[3][:5]),
     T + "label_category must have shape [40], got shape [5]"),
    ("acts 3-d", assign(0, lambda a: a[0][0]), T + "acts must be [N, U, h, w], got shape [3, 5, 6]"),
    ("image count", assign(2, lambda a: a[2][:1]), T + "acts has 2 images but labels has 1"),
]
# Inputs on different devices, emulated on the CPU with 'meta'.
BAD_DEVICES_META = [
    ("thresholds on meta", to_device(1, "meta"),
     T + "thresholds is on meta but acts is on cpu" + SAME_DEVICE),
    ("labels on meta", to_device(2, "meta"), T + "labels is on meta but acts is on cpu" + SAME_DEVICE),
    ("label_category on meta", to_device(3, "meta"),
     T + "label_category is on meta but acts is on cpu" + SAME_DEVICE),
    ("acts on meta", to_device(0, "meta"), T + "thresholds is on cpu but acts is on meta" + SAME_DEVICE),
]



def cpu_kernel(*args):
    """The CPU kernel itself (the dispatcher would pick another kernel for non-CPU inputs)."""
    return torch.ops.ndcore.tally.default.redispatch(CPU_KEYS, *args)


RUNNERS = {
    "cpu-kernel": cpu_kernel,
    "dispatcher": lambda *a: torch.ops.ndcore.tally(*a),
    "reference": tally_reference,
    "wrapper": tally,
}


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_VALUES + BAD_DEVICES_META],
                         ids=[c[0] for c in BAD_VALUES + BAD_DEVICES_META])
def test_bad_inputs_rejected_alike(runner: str, edit: Callable, message: str) -> None:
    if runner != "reference" and not LOADED:
        pytest.skip("compiled extension ndcore._C not built")
    args = valid_args()
    edit(args)
    expect_rejection(RUNNERS[runner], args, message)


def test_valid_case_accepted() -> None:
    """The table's base case is valid: the rejections come from the edits alone."""
    args = valid_args()
    want = tally_reference(*args)
    if LOADED:
        assert_same(cpu_kernel(*args), want, "cpu kernel")
        assert_same(tally(*args), want, "wrapper")


@needs_ext
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int64])
def test_label_dtypes_accepted(dtype: torch.dtype) -> None:
    args = valid_args()
    want = tally_reference(*args)
    args[2] = args[2].to(dtype)
    assert_same(run_op(tuple(args)), want, f"op, {dtype}")
    assert_same(tally_reference(*args), want, f"reference, {dtype}")
    assert_same(tally(*args), want, f"wrapper, {dtype}")


def test_wrapper_does_not_move_tensors() -> None:
    """ndcore.ops.tally used to move thresholds/labels to acts.device silently; now it refuses,
    before any data is read, whatever the backend."""
    args = valid_args()
    args[1] = args[1].to("meta")
    for use_reference in (False, True):
        with pytest.raises(ValueError, match="thresholds is on meta but acts is on cpu"):
            tally(*args, use_reference=use_reference)


def test_default_archs_embed_ptx() -> None:
    """setup.py's default architectures end with +PTX, so newer GPUs can JIT-compile."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    values = [node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
              and any(getattr(t, "id", None) == "DEFAULT_ARCHS" for t in node.targets)]
    assert len(values) == 1, values
    archs = values[0].split(";")
    assert archs[-1].endswith("+PTX") and all("+PTX" not in a for a in archs[:-1]), archs


@needs_ext
def test_opcheck_cpu() -> None:
    torch.library.opcheck(torch.ops.ndcore.tally.default, make_case(n=2, units=3))


def test_wrapper_converts_dtypes() -> None:
    acts, thr, labels, cats, nl, nc = make_case(units=4)
    want = tally_reference(acts, thr, labels, cats, nl, nc)
    got = tally(acts.half().float(), thr.double(), labels.long(), cats.int(), nl, nc)
    assert_same(got, tally_reference(acts.half().float(), thr, labels, cats, nl, nc), "wrapper")
    assert_same(tally(acts, thr, labels, cats, nl, nc, use_reference=True), want, "reference")
    half = tally(acts.half(), thr, labels.short(), cats, nl, nc)
    assert half[0].shape == want[0].shape


# ---------------------------------------------------------------------------- CUDA kernel


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        dict(),
        dict(h=7, w=7, sh=112, sw=112, n=4, units=37, planes=4, num_labels=1200, num_categories=6),
        dict(h=1, w=1, sh=9, sw=9),
        dict(h=28, w=28, sh=28, sw=28),
        dict(h=40, w=33, sh=17, sw=12),
        dict(planes=6, num_categories=0),
        dict(n=1, units=1),
        dict(num_labels=20000, num_categories=13000),  # histograms too big for shared memory
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default",
)
def test_cuda_matches_reference_and_cpu(shape: dict) -> None:
    args = make_case(**shape)
    want = tally_reference(*args)
    got = run_op(args, "cuda")
    assert_same(got, want, f"cuda {shape}")
    if LOADED:
        assert_same(got, run_op(args, "cpu"), f"cuda vs cpu {shape}")


@cuda
@needs_gpu
@needs_ext
def test_cuda_adversarial_thresholds() -> None:
    acts, _, labels, cats, nl, nc = make_case(h=5, w=6, sh=37, sw=29, units=8)
    thr = exact_value_thresholds(acts, (37, 29))
    assert_same(run_op((acts, thr, labels, cats, nl, nc), "cuda"),
                tally_reference(acts, thr, labels, cats, nl, nc), "cuda thr = value")
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(4, 16, 6, 6, generator=g) * 10
    thr = acts[0, :, 2, 3].clone()
    acts[:, :, 1:4, 1:5] = thr.view(1, -1, 1, 1)
    labels = torch.randint(0, 9, (4, 2, 41, 43), generator=g, dtype=torch.int32)
    cats = torch.randint(-1, 3, (9,), generator=g)
    args = (acts, thr, labels, cats, 9, 3)
    assert_same(run_op(args, "cuda"), tally_reference(*args), "cuda corner plateaus")
    full = (acts, thr - 100, labels, cats, 9, 3)
    assert_same(run_op(full, "cuda"), tally_reference(*full), "cuda full")


@cuda
@needs_gpu
@needs_ext
def test_cuda_reference_on_gpu_agrees() -> None:
    """The reference itself gives the same counts on the GPU (same float32 operations)."""
    args = make_case(h=7, w=7, sh=56, sw=56, units=6)
    gpu_args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    assert_same(tally_reference(*gpu_args), tally_reference(*args), "reference cuda vs cpu")


@cuda
@needs_gpu
@needs_ext
def test_opcheck_cuda() -> None:
    args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in make_case(n=2, units=3)]
    torch.library.opcheck(torch.ops.ndcore.tally.default, tuple(args))


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_cuda_bad_values_rejected_alike(edit: Callable, message: str) -> None:
    """The CUDA kernel rejects the bad values of the table with the CPU kernel's message."""
    args = valid_args()
    edit(args)
    args = cuda_args(args)
    expect_rejection(lambda *a: torch.ops.ndcore.tally(*a), args, message)
    expect_rejection(lambda *a: torch.ops.ndcore.tally.default.redispatch(CUDA_KEYS, *a), args,
                     message)
    expect_rejection(tally_reference, args, message)
    expect_rejection(tally, args, message)


def _mixed_devices(first: str, other: str) -> List[tuple]:
    """(index moved, edit, message) for every input moved from `first` to `other`."""
    names = ["acts", "thresholds", "labels", "label_category"]
    cases = []
    for i, name in enumerate(names[1:], start=1):
        cases.append((name, to_device(i, other), T + f"{name} is on {other} but acts is on "
                      f"{first}" + SAME_DEVICE))
    cases.append(("acts", to_device(0, other), T + f"thresholds is on {first} but acts is on "
                  f"{other}" + SAME_DEVICE))
    return cases


def _check_mixed(first: str, other: str) -> None:
    for name, edit, message in _mixed_devices(first, other):
        args = cuda_args(valid_args(), first)
        edit(args)
        for runner in (lambda *a: torch.ops.ndcore.tally(*a), tally_reference, tally):
            expect_rejection(runner, args, message)


@cuda
@needs_gpu
@needs_ext
def test_cuda_and_cpu_inputs_rejected() -> None:
    """One input on the CPU, the others on cuda:0 (and the reverse): both kernels refuse."""
    _check_mixed("cuda:0", "cpu")
    _check_mixed("cpu", "cuda:0")


@cuda
@needs_two_gpus
@needs_ext
def test_two_cuda_devices_rejected() -> None:
    """cuda:0 vs cuda:1: the device index counts, not only the device type."""
    _check_mixed("cuda:0", "cuda:1")


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int64])
def test_cuda_label_dtypes_accepted(dtype: torch.dtype) -> None:
    args = valid_args()
    want = tally_reference(*args)
    args[2] = args[2].to(dtype)
    assert_same(torch.ops.ndcore.tally(*cuda_args(args)), want, f"cuda, {dtype}")


@cuda
@needs_gpu
@needs_ext
def test_cuda_launch_plan_fills_the_gpu() -> None:
    """Small batches are spread over >= 2 blocks per SM (units per block down to 1, then bands
    of rows); big ones keep 8 units per block. Bands tile the rows exactly."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    small = ops._C.cuda_launch_plan(1, 64, 112, 112)
    assert small["blocks"] >= 2 * sms and small["units_per_block"] == 1, small
    big = ops._C.cuda_launch_plan(64, 512, 112, 112)
    assert big["units_per_block"] == 8 and big["bands"] == 1, big
    for sh, sw in [(112, 112), (9, 300), (300, 1), (1, 1), (37, 29)]:
        p = ops._C.cuda_launch_plan(1, 1, sh, sw)
        assert p["blocks"] == p["bands"] >= 1, p
        assert (p["bands"] - 1) * p["rows_per_band"] < sh <= p["bands"] * p["rows_per_band"], p
        # at least kThreads (256) pixels per band unless the image is smaller
        assert p["bands"] == 1 or p["rows_per_band"] * sw >= 256, p


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        dict(n=1, units=64, h=7, w=7, sh=112, sw=112),  # 1 unit per block, row bands
        dict(n=1, units=1, h=14, w=14, sh=112, sw=112),
        dict(n=2, units=3, h=5, w=1, sh=300, sw=1),  # 1-pixel rows: many rows per step
        dict(n=2, units=3, h=1, w=9, sh=1, sw=300),  # rows wider than a block
        dict(n=3, units=5, h=6, w=5, sh=37, sw=29),  # rows not dividing the block
        dict(n=1, units=2, h=3, w=3, sh=1, sw=1),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_cuda_small_batches_and_odd_shapes(shape: dict) -> None:
    args = make_case(**shape)
    assert_same(run_op(args, "cuda"), tally_reference(*args), f"cuda {shape}")


@cuda
@needs_gpu
@needs_ext
def test_cuda_large_uniform_regions() -> None:
    """Whole warps hitting one label (warp-aggregated atomics) or all different labels: exact
    counts, including the analytic ones of an all-hot mask."""
    n, units, sh, sw = 3, 6, 64, 96
    g = torch.Generator().manual_seed(11)
    acts = torch.rand(n, units, 8, 12, generator=g)
    thr = torch.full((units,), -1.0)  # every pixel hot
    uniform = torch.ones(n, 2, sh, sw, dtype=torch.int32)
    uniform[:, 1, :, : sw // 2] = 2
    distinct = (torch.arange(sh * sw, dtype=torch.int32) % 1000 + 1).view(1, 1, sh, sw)
    distinct = distinct.expand(n, 1, sh, sw).contiguous()
    for labels, nl in ((uniform, 3), (distinct, 1001)):
        cats = torch.arange(nl) % 3 - 1
        args = (acts, thr, labels, cats, nl, 2)
        got = run_op(args, "cuda")
        assert_same(got, tally_reference(*args), "cuda uniform regions")
        assert bool((got[1] == sh * sw).all())
        assert int(got[0].sum()) == units * int((labels > 0).sum())
