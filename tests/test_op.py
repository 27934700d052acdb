"""The compiled tally op (CPU and CUDA kernels) against the pure-PyTorch reference.

All counts must agree exactly, including pixels whose upsampled value equals the threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import pytest
import torch
import torch.nn.functional as F

from ndcore.ops import extension_info, tally, tally_reference, upsample_bilinear

LOADED = extension_info()["loaded"]
needs_ext = pytest.mark.skipif(not LOADED, reason="compiled extension ndcore._C not built")
cuda = pytest.mark.cuda
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


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
    for shape in (dict(n=0), dict(units=0), dict(planes=0)):
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
