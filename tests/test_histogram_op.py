"""The iou_histogram op (CPU and CUDA kernels) against its pure-PyTorch reference.

hist[u, l, j] counts the (pixel, plane) pairs with label l (l >= 1; l = 0: every pixel once)
whose upsampled value's last edge strictly below is edges[u, j]. All counts must agree exactly,
including values equal to an edge and values that float32 interpolation rounds across an edge.
"""

from __future__ import annotations

from typing import Callable, List

import pytest
import torch

from ndcore.ops import (
    iou_histogram,
    iou_histogram_reference,
    tally,
    tally_reference,
    upsample_bilinear,
)
from ndcore.ops.reference import _source_weights
from op_harness import (CPU_KEYS, CUDA_KEYS, LOADED, SAME_DEVICE, assign, cuda, cuda_args,
                        expect_rejection, needs_ext, needs_gpu, needs_two_gpus, set_label,
                        to_device)

INF = float("inf")


def strictly_increasing(edges: torch.Tensor) -> torch.Tensor:
    """Sorted rows made strictly increasing by moving ties up to the next float."""
    edges = edges.sort(dim=1).values.clone()
    for k in range(1, edges.shape[1]):
        edges[:, k] = torch.maximum(edges[:, k], torch.nextafter(edges[:, k - 1],
                                                                 torch.tensor(INF)))
    return edges.contiguous()


def make_case(
    n: int = 3,
    units: int = 5,
    h: int = 7,
    w: int = 7,
    planes: int = 3,
    sh: int = 28,
    sw: int = 28,
    num_labels: int = 12,
    n_edges: int = 16,
    levels: tuple = (0.3, 0.995),
    seed: int = 0,
) -> tuple:
    """acts (ReLU'd noise), edges at quantiles of each unit's values (ties made strict), labels
    with about a third of label 0."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, units, h, w, generator=g).relu()
    acts *= torch.rand(1, units, 1, 1, generator=g) * 3 + 0.1
    if acts.numel():
        q = torch.linspace(levels[0], levels[1], n_edges)
        edges = torch.quantile(acts.transpose(0, 1).reshape(units, -1), q, dim=1).T
    else:
        edges = torch.arange(float(units * n_edges)).view(units, n_edges)
    edges = strictly_increasing(edges)
    labels = torch.randint(1, num_labels, (n, planes, sh, sw), generator=g, dtype=torch.int32) \
        if num_labels > 1 else torch.zeros(n, planes, sh, sw, dtype=torch.int32)
    labels[torch.rand(labels.shape, generator=g) < 0.3] = 0
    return acts, edges, labels, num_labels


def run_op(args: tuple, device: str = "cpu") -> torch.Tensor:
    moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    return torch.ops.ndcore.iou_histogram(*moved)


def assert_same(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    assert got.dtype == torch.int64, f"{what}: dtype {got.dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    got, want = got.cpu(), want.cpu()
    if not torch.equal(got, want):
        diff = (got - want).abs()
        raise AssertionError(f"{what}: {int((diff > 0).sum())} bins differ (max |diff| "
                             f"{int(diff.max())}, total {int(want.sum())})")


def check_against_reference(args: tuple, device: str = "cpu", what: str = "") -> torch.Tensor:
    want = iou_histogram_reference(*args)
    assert_same(run_op(args, device), want, what)
    return want


def suffix_sums(hist: torch.Tensor) -> torch.Tensor:
    """sum_{j' >= j} hist[..., j']: counts above edge j."""
    return hist.flip(-1).cumsum(-1).flip(-1)


# ---------------------------------------------------------------------------- the reference


def test_reference_is_the_thresholded_count() -> None:
    """The defining property, written out literally: the suffix sum at edge j is the number of
    (pixel, plane) pairs with label l whose value is > edges[u, j] (all pixels for l = 0),
    including NaN values (never counted) and values equal to an edge."""
    acts, edges, labels, nl = make_case(n=2, units=3, h=4, w=5, planes=2, sh=9, sw=11,
                                        num_labels=5, n_edges=6)
    acts[0, 1, 1, 1] = float("nan")
    up = upsample_bilinear(acts, (9, 11))
    edges[2, 3] = up[1, 2, 4, 4]  # a value equal to an edge
    edges = strictly_increasing(edges)
    hist = iou_histogram_reference(acts, edges, labels, nl)
    above = suffix_sums(hist)
    assert bool((up[:, 2] == edges[2, 3]).any())
    for u in range(3):
        for j in range(6):
            mask = up[:, u] > edges[u, j]  # [N, sh, sw]
            assert int(above[u, 0, j]) == int(mask.sum())
            for lab in range(1, nl):
                hits = ((labels == lab) & mask[:, None]).sum()
                assert int(above[u, lab, j]) == int(hits), (u, lab, j)


# ---------------------------------------------------------------------------- CPU kernel


@needs_ext
def test_edge_search_exact_for_every_hint() -> None:
    """The kernels' edge search (bisection; and, on the CPU, a walk from a guessed count that
    falls back to bisection) counts the edges e with v > e exactly, for every guess, on values
    equal to, just above and just below edges, outside the range, infinite and NaN."""
    from ndcore.ops import _C

    g = torch.Generator().manual_seed(2)
    down, up = torch.tensor(-INF), torch.tensor(INF)
    for n in (1, 2, 3, 5, 9, 17):
        edges = strictly_increasing(torch.randn(1, n, generator=g))[0]
        values = torch.cat([edges, torch.nextafter(edges, down), torch.nextafter(edges, up),
                            torch.tensor([-INF, INF, float("nan"), -1e30, 1e30, 0.0]),
                            torch.randn(10, generator=g)])
        for v in values.tolist():
            want = int((torch.tensor(v, dtype=torch.float32) > edges).sum())
            for hint in range(n + 1):
                assert _C._count_edges_below(edges, v, hint) == (want, want), (n, v, hint)


@needs_ext
@pytest.mark.parametrize("seed", range(3))
def test_random(seed: int) -> None:
    check_against_reference(make_case(seed=seed), what=f"seed {seed}")


@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        dict(h=1, w=1, sh=9, sw=9),  # 1x1 maps
        dict(h=7, w=7, sh=112, sw=112, n=2, units=3),  # integer factor 16
        dict(h=5, w=5, sh=13, sw=13),  # non-integer factor 2.6
        dict(h=5, w=11, sh=23, sw=64),  # non-square, non-integer
        dict(h=40, w=33, sh=17, sw=12),  # downsampling
        dict(h=28, w=28, sh=28, sw=28),  # no upsampling
        dict(planes=6),
        dict(n=1, units=1),
        dict(n_edges=1),
        dict(num_labels=1),  # only label 0: column 0 alone
        dict(sh=1, sw=1),
        dict(num_labels=300, n_edges=40),
        # No upsampling, independent values, many edges: neighbouring pixels' bins are far
        # apart, so the CPU kernel's search from the previous bin must fall back to bisection.
        dict(h=20, w=20, sh=20, sw=20, n_edges=200, levels=(0.0, 1.0)),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_shapes(shape: dict) -> None:
    check_against_reference(make_case(**shape), what=str(shape))


def values_as_edges(up: torch.Tensor, n_edges: int, seed: int = 0) -> torch.Tensor:
    """Per unit, n_edges distinct values that occur in its upsampled maps."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for u in range(up.shape[1]):
        values = up[:, u].reshape(-1).unique()
        rows.append(values[torch.randperm(values.numel(), generator=g)[:n_edges]].sort().values)
    return torch.stack(rows).contiguous()


@needs_ext
@pytest.mark.parametrize("seed", range(2))
def test_activations_equal_to_edges(seed: int) -> None:
    acts, _, labels, nl = make_case(h=5, w=6, sh=37, sw=29, units=6, seed=seed)
    up = upsample_bilinear(acts, (37, 29))
    edges = values_as_edges(up, 10, seed)
    assert all(bool((up[:, u] == edges[u, j]).any()) for u in range(6) for j in range(10))
    check_against_reference((acts, edges, labels, nl), what="edges = upsampled values")


@needs_ext
def test_corner_plateaus_at_the_lowest_edge() -> None:
    """Corners equal to the lowest edge: float32 interpolation rounds some pixels above it, so
    a kernel skipping cells whose corners are all <= edges[u, 0] would miss them."""
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(4, 16, 6, 6, generator=g) * 10
    lowest = acts[0, :, 2, 3].clone()
    acts[:, :, 1:4, 1:5] = lowest.view(1, -1, 1, 1)
    acts = torch.minimum(acts, lowest.view(1, -1, 1, 1))  # nothing above the lowest edge...
    edges = strictly_increasing(lowest.view(-1, 1) + torch.tensor([0.0, 1e-6, 0.5, 3.0]))
    labels = torch.randint(0, 9, (4, 2, 41, 43), generator=g, dtype=torch.int32)
    want = check_against_reference((acts, edges, labels, 9), what="corner plateaus")
    up = upsample_bilinear(acts, (41, 43))
    # ...yet some pixels round above it: the premise of this test.
    assert bool((up > edges[:, 0].view(1, -1, 1, 1)).any()) and int(want.sum()) > 0


def upsample_float64(acts: torch.Tensor, size: tuple) -> torch.Tensor:
    """The reference's interpolation with its float32 weights but float64 arithmetic: nearly the
    exact value of each pixel."""
    y0, ys, ly0, ly1 = (t.double() if t.is_floating_point() else t
                        for t in _source_weights(acts.shape[2], size[0], acts.device))
    x0, xs, lx0, lx1 = (t.double() if t.is_floating_point() else t
                        for t in _source_weights(acts.shape[3], size[1], acts.device))
    a = acts.double()

    def along_x(rows: torch.Tensor) -> torch.Tensor:
        return lx0 * rows[..., x0] + lx1 * rows[..., x0 + xs]

    return ly0.view(-1, 1) * along_x(a[..., y0, :]) + ly1.view(-1, 1) * along_x(a[..., y0 + ys, :])


@needs_ext
def test_rounding_across_edges() -> None:
    """Edges between the exact (float64) interpolation of a pixel and its float32 value: only
    the float32 value, as the reference computes it, decides the bin."""
    g = torch.Generator().manual_seed(5)
    acts = torch.rand(2, 4, 5, 7, generator=g) * 7
    size = (31, 45)
    up32 = upsample_bilinear(acts, size)
    up64 = upsample_float64(acts, size)
    assert not torch.equal(up32.double(), up64)
    rows = []
    for u in range(4):
        exact, rounded = up64[:, u].reshape(-1), up32[:, u].reshape(-1).double()
        up_idx = (exact > rounded).nonzero().view(-1)  # rounded down: edge = float32 value
        down_idx = (exact < rounded).nonzero().view(-1)  # rounded up: edge just below it
        picks = [rounded[up_idx[:4]].float(),
                 torch.nextafter(rounded[down_idx[:4]].float(), torch.tensor(-INF))]
        rows.append(torch.cat(picks))
    edges = strictly_increasing(torch.stack(rows))
    # Premise: for some pixels the exact value and the float32 value fall on either side of
    # an edge.
    e = edges.view(1, 4, 1, 1, -1)
    flips = ((up64.unsqueeze(-1) > e) != (up32.double().unsqueeze(-1) > e)).sum()
    assert int(flips) > 0
    labels = torch.randint(0, 6, (2, 2, *size), generator=g, dtype=torch.int32)
    check_against_reference((acts, edges, labels, 6), what="rounding across edges")


@needs_ext
def test_maps_below_the_lowest_edge_are_skipped() -> None:
    acts, edges, labels, nl = make_case(units=6)
    top = acts.amax(dim=(0, 2, 3))
    edges[:3] = strictly_increasing(top[:3].view(-1, 1) + torch.arange(16.0).view(1, -1))
    edges[3] = strictly_increasing(torch.full((1, 16), float(top[3])))[0]  # lowest = max
    want = check_against_reference((acts, edges, labels, nl), what="skipped maps")
    assert int(want[:3].sum()) == 0 and int(want[4:].sum()) > 0


@needs_ext
@pytest.mark.parametrize("value", [0.0, 1.5, -2.0])
def test_constant_maps(value: float) -> None:
    acts = torch.full((2, 3, 5, 4), value)
    edges = torch.tensor([[value - 1, value, value + 1]] * 3)
    edges[1] = torch.tensor([value, value + 0.5, value + 1])
    labels = torch.randint(0, 5, (2, 2, 16, 11), dtype=torch.int32)
    want = check_against_reference((acts, edges, labels, 5), what=f"constant {value}")
    assert int(want[1].sum()) == 0 and int(want[0, 0, 0]) == 2 * 16 * 11


@needs_ext
def test_label_zero_everywhere_and_several_planes() -> None:
    acts, edges, labels, nl = make_case(planes=5)
    zeros = torch.zeros_like(labels)
    got = check_against_reference((acts, edges, zeros, nl), what="label 0")
    assert int(got[:, 1:].sum()) == 0 and int(got[:, 0].sum()) > 0
    check_against_reference((acts, edges, labels, nl), what="5 planes")


@needs_ext
def test_maps_with_nan() -> None:
    acts, edges, labels, nl = make_case(units=3)
    acts[0, 0, 2, 2] = float("nan")
    acts[1, 1] = float("nan")
    check_against_reference((acts, edges, labels, nl), what="NaN")


@needs_ext
def test_empty_batches() -> None:
    for shape in (dict(n=0), dict(units=0), dict(planes=0), dict(sh=0), dict(sw=0)):
        check_against_reference(make_case(**shape), what=str(shape))


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
        assert_same(one, iou_histogram_reference(*args), f"reference, {units} units")


@needs_ext
def test_consistent_with_tally() -> None:
    """Suffix sums at edge j are tally's intersection (l >= 1) and area summed over images
    (l = 0), with thresholds = edges[:, j]: the two ops count the same masks."""
    acts, edges, labels, nl = make_case(n=4, units=6, h=7, w=9, sh=45, sw=38, n_edges=12)
    up = upsample_bilinear(acts, (45, 38))
    edges[:, 5:] = values_as_edges(up, 7)  # thresholds equal to some values
    edges = strictly_increasing(edges)
    above = suffix_sums(run_op((acts, edges, labels, nl)))
    cats = torch.zeros(nl, dtype=torch.int64)
    for j in range(edges.shape[1]):
        inter, area, _ = tally(acts, edges[:, j].contiguous(), labels, cats, nl, 1)
        assert torch.equal(above[:, 1:, j], inter[:, 1:]), j
        assert torch.equal(above[:, 0, j], area.sum(0)), j
        ref_inter, ref_area, _ = tally_reference(acts, edges[:, j], labels, cats, nl, 1)
        assert torch.equal(ref_inter, inter) and torch.equal(ref_area, area)


@needs_ext
def test_opcheck_cpu() -> None:
    torch.library.opcheck(torch.ops.ndcore.iou_histogram.default, make_case(n=2, units=3))


@needs_ext
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int64])
def test_label_dtypes_accepted(dtype: torch.dtype) -> None:
    acts, edges, labels, nl = make_case()
    want = iou_histogram_reference(acts, edges, labels, nl)
    assert_same(run_op((acts, edges, labels.to(dtype), nl)), want, f"op {dtype}")
    assert_same(iou_histogram_reference(acts, edges, labels.to(dtype), nl), want, f"ref {dtype}")


def test_wrapper_converts_dtypes() -> None:
    acts, edges, labels, nl = make_case(units=4)
    want = iou_histogram_reference(acts, edges, labels, nl)
    assert_same(iou_histogram(acts.double(), edges.double(), labels.long(), nl), want, "float64")
    assert_same(iou_histogram(acts, edges, labels, nl, use_reference=True), want, "reference")
    half = iou_histogram(acts.half(), edges, labels.short(), nl)
    assert_same(half, iou_histogram_reference(acts.half().float(), edges, labels, nl), "half")


# ---------------------------------------------------------------------------- validation

H = "ndcore::iou_histogram: "
NL = 12


def valid_args() -> list:
    args = list(make_case(n=2, units=3, h=5, w=6, planes=2, sh=11, sw=13, num_labels=NL,
                          n_edges=5))
    args[2][0, 0, 0, :2] = torch.tensor([0, NL - 1], dtype=torch.int32)
    return args


def edit_edges(fn: Callable[[torch.Tensor], None]) -> Callable[[list], None]:
    def edit(a: list) -> None:
        a[1] = a[1].clone()
        fn(a[1])
    return edit


def _set(e: torch.Tensor, u: int, j: int, value) -> None:
    e[u, j] = value(e) if callable(value) else value


BAD_VALUES = [
    ("label=num_labels", set_label(NL), H + "label values must lie in [0, 12), got [0, 12]"),
    ("negative label", set_label(-1), H + "label values must lie in [0, 12), got [-1, 11]"),
    ("int64 label wrapping to 3", set_label(2**32 + 3, torch.int64),
     H + "label values must lie in [0, 12), got [0, 4294967299]"),
    ("float labels", assign(2, lambda a: a[2].double()),
     H + "labels must be an integer tensor (uint8, int8, int16, int32 or int64), got float64"),
    ("tied edges", edit_edges(lambda e: _set(e, 1, 3, lambda e: e[1, 2])),
     H + "edges must be strictly increasing along each unit"),
    ("decreasing edges", edit_edges(lambda e: e.copy_(e.flip(1))),
     H + "edges must be strictly increasing along each unit"),
    ("NaN edge", edit_edges(lambda e: _set(e, 0, 4, float("nan"))), H + "edges must be finite"),
    ("inf edge", edit_edges(lambda e: _set(e, 2, 4, INF)), H + "edges must be finite"),
    ("-inf edge", edit_edges(lambda e: _set(e, 2, 0, -INF)), H + "edges must be finite"),
    ("no edges", assign(1, lambda a: a[1][:, :0]),
     H + "edges must have shape [3, B] with B >= 1, got shape [3, 0]"),
    ("edges 1-d", assign(1, lambda a: a[1][0]),
     H + "edges must have shape [3, B] with B >= 1, got shape [5]"),
    ("edges of 2 units", assign(1, lambda a: a[1][:2]),
     H + "edges must have shape [3, B] with B >= 1, got shape [2, 5]"),
    ("num_labels 0", assign(3, 0),
     H + "num_labels must lie in [1, 2147483647] (label 0 = none), got 0"),
    ("output over 2 GiB", assign(3, 2**25),
     H + "the histogram [3, 33554432, 5] of int64 would exceed 2 GiB; split the units or use "
     "fewer edges"),
    ("image count", assign(2, lambda a: a[2][:1]), H + "acts has 2 images but labels has 1"),
    ("acts 3-d", assign(0, lambda a: a[0][0]), H + "acts must be [N, U, h, w], got shape [3, 5, 6]"),
]
BAD_DEVICES_META = [
    ("edges on meta", to_device(1, "meta"), H + "edges is on meta but acts is on cpu" + SAME_DEVICE),
    ("labels on meta", to_device(2, "meta"), H + "labels is on meta but acts is on cpu" + SAME_DEVICE),
    ("acts on meta", to_device(0, "meta"), H + "edges is on cpu but acts is on meta" + SAME_DEVICE),
]
RUNNERS = {
    "cpu-kernel": lambda *a: torch.ops.ndcore.iou_histogram.default.redispatch(CPU_KEYS, *a),
    "dispatcher": lambda *a: torch.ops.ndcore.iou_histogram(*a),
    "reference": iou_histogram_reference,
    "wrapper": iou_histogram,
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
    args = valid_args()
    want = iou_histogram_reference(*args)
    assert int(want.sum()) > 0
    if LOADED:
        assert_same(RUNNERS["cpu-kernel"](*args), want, "cpu kernel")


# ---------------------------------------------------------------------------- CUDA kernel


def check_cuda(args: tuple, what: str) -> None:
    got = run_op(args, "cuda")
    assert_same(got, run_op(args, "cpu"), f"cuda vs cpu, {what}")
    assert_same(got, iou_histogram_reference(*args), f"cuda vs reference, {what}")


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize(
    "shape",
    [
        dict(),
        dict(h=7, w=7, sh=112, sw=112, n=4, units=37, planes=4),
        dict(n=1, units=64, h=8, w=8, sh=64, sw=64),  # small batch: units per block 1, bands
        dict(h=1, w=1, sh=9, sw=9),
        dict(h=5, w=5, sh=13, sw=13),
        dict(h=40, w=33, sh=17, sw=12),
        dict(h=3, w=1, sh=300, sw=1),
        dict(h=1, w=9, sh=1, sw=300),
        dict(n_edges=1, num_labels=1),
        dict(num_labels=12, n_edges=256),  # 12 KiB of bins: default shared memory
        dict(num_labels=60, n_edges=256),  # 60 KiB: opted-in shared memory
        dict(num_labels=200, n_edges=256),  # 200 KiB: global atomics
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default",
)
def test_cuda_matches_cpu(shape: dict) -> None:
    check_cuda(make_case(**shape), str(shape))


@cuda
@needs_gpu
@needs_ext
def test_cuda_adversarial() -> None:
    acts, _, labels, nl = make_case(h=5, w=6, sh=37, sw=29, units=6)
    edges = values_as_edges(upsample_bilinear(acts, (37, 29)), 10)
    check_cuda((acts, edges, labels, nl), "edges = values")
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(4, 16, 6, 6, generator=g) * 10
    lowest = acts[0, :, 2, 3].clone()
    acts[:, :, 1:4, 1:5] = lowest.view(1, -1, 1, 1)
    acts = torch.minimum(acts, lowest.view(1, -1, 1, 1))
    edges = strictly_increasing(lowest.view(-1, 1) + torch.tensor([0.0, 1e-6, 0.5, 3.0]))
    labels = torch.randint(0, 9, (4, 2, 41, 43), generator=g, dtype=torch.int32)
    check_cuda((acts, edges, labels, 9), "corner plateaus")
    acts, edges, labels, nl = make_case(units=3)
    acts[1, 1] = float("nan")
    check_cuda((acts, edges, labels, nl), "NaN")


@cuda
@needs_gpu
@needs_ext
def test_cuda_uniform_regions() -> None:
    """Every pixel counted, one label per plane: whole warps add to one bin."""
    acts = torch.rand(2, 5, 8, 8)
    edges = torch.tensor([[-1.0, 0.5, 2.0]] * 5)
    labels = torch.ones(2, 2, 64, 64, dtype=torch.int32)
    labels[:, 1] = 2
    got = run_op((acts, edges, labels, 3), "cuda").cpu()
    assert_same(got, iou_histogram_reference(acts, edges, labels, 3), "uniform")
    assert bool((got[:, 0].sum(-1) == 2 * 64 * 64).all())


@cuda
@needs_gpu
@needs_ext
@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_cuda_bad_values_rejected_alike(edit: Callable, message: str) -> None:
    args = valid_args()
    edit(args)
    args = cuda_args(args)
    expect_rejection(lambda *a: torch.ops.ndcore.iou_histogram(*a), args, message)
    expect_rejection(lambda *a: torch.ops.ndcore.iou_histogram.default.redispatch(CUDA_KEYS, *a),
                     args, message)
    expect_rejection(iou_histogram_reference, args, message)


def _check_mixed(first: str, other: str) -> None:
    cases: List[tuple] = [(1, f"edges is on {other} but acts is on {first}"),
                          (2, f"labels is on {other} but acts is on {first}"),
                          (0, f"edges is on {first} but acts is on {other}")]
    for index, message in cases:
        args = cuda_args(valid_args(), first)
        args[index] = args[index].to(other)
        for runner in (RUNNERS["dispatcher"], iou_histogram_reference, iou_histogram):
            expect_rejection(runner, args, H + message + SAME_DEVICE)


@cuda
@needs_gpu
@needs_ext
def test_cuda_and_cpu_inputs_rejected() -> None:
    _check_mixed("cuda:0", "cpu")
    _check_mixed("cpu", "cuda:0")


@cuda
@needs_two_gpus
@needs_ext
def test_two_cuda_devices_rejected() -> None:
    _check_mixed("cuda:0", "cuda:1")


@cuda
@needs_gpu
@needs_ext
def test_opcheck_cuda() -> None:
    torch.library.opcheck(torch.ops.ndcore.iou_histogram.default,
                          tuple(cuda_args(make_case(n=2, units=3))))
