"""Pure-PyTorch references of the fused ops ``tally`` and ``iou_histogram``.

This module *defines* the semantics of ``torch.ops.ndcore.tally`` and
``torch.ops.ndcore.iou_histogram``; the C++ (CPU) and CUDA kernels must agree with it exactly
(all counts are int64). It is also the fallback when the compiled extension is missing, and the
oracle of the tests. The references reject the inputs the kernels reject, with the same
ValueError messages (checks.py): labels of any integer dtype whose values lie in
[0, num_labels), label_category values in {-1} u [0, num_categories), all tensors on one device.

Semantics of tally, for a batch of N images and U units of one layer::

    S = bilinear_upsample(acts, size=(sh, sw))          # align_corners=False, float32
    M = S > thresholds[None, :, None, None]             # strict comparison
    area[n, u]        = sum_p M[n, u, p]
    intersection[u, l] = sum_n sum_p sum_j M[n, u, p] * (labels[n, j, p] == l)      (l >= 1)
    cat_hits[n, u, c] = sum_p sum_j M[n, u, p] * (label_category[labels[n, j, p]] == c)

``labels`` holds P label planes per image (0 = no label, so column 0 of ``intersection`` is
always 0). Each (pixel, plane) pair counts once: callers that can repeat a label at one pixel in
several planes must remove the duplicates first (the Broden reader does). ``label_category[l]``
is the primary category of label l (or -1 for none); ``cat_hits`` only serves to know whether a
mask touches a category at all (NetDissect-Lite's union convention) and has C = num_categories
columns (C may be 0).

Upsampling uses the same arithmetic as ``F.interpolate(mode="bilinear", align_corners=False)``
on the CPU in float32: the value is a convex combination of four samples, computed as
``(1-ly)*((1-lx)*a + lx*b) + ly*((1-lx)*c + lx*d)``. Kernels must compute it the same way, in
float32, so that values equal to a threshold compare identically. iou_histogram: see
``iou_histogram_reference``.
"""

from __future__ import annotations

from typing import Tuple

import torch

from .checks import (
    check_iou_histogram_args,
    check_iou_histogram_values,
    check_tally_args,
    check_tally_values,
)

TallyOutput = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _source_weights(in_size: int, out_size: int, device: torch.device):
    """Per output index: first source index, step to the second (0 at the edge), and weights.

    Same float32 arithmetic as ATen's ``area_pixel_compute_source_index`` (align_corners=False):
    ``src = max(scale * (dst + 0.5) - 0.5, 0)`` with ``scale = in / out``.
    """
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    dst = torch.arange(out_size, dtype=torch.float32)
    src = torch.clamp(scale * (dst + 0.5) - 0.5, min=0.0)
    idx0 = src.floor().long().clamp(max=in_size - 1)
    step = (idx0 < in_size - 1).long()
    lam1 = src - idx0.float()
    lam0 = 1.0 - lam1
    return idx0.to(device), step.to(device), lam0.to(device), lam1.to(device)


def upsample_bilinear(acts: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Upsample [N, U, h, w] maps to ``size`` (pixel centres, clamped edges), in float32.

    Written out rather than calling ``F.interpolate`` so that the exact order of float
    operations is fixed: ``l0y * (l0x * a + l1x * b) + l1y * (l0x * c + l1x * d)``. The
    kernels use this order, so a value equal to a threshold compares the same everywhere.
    (It agrees with ``F.interpolate(mode="bilinear", align_corners=False)`` to rounding.)
    """
    acts = acts.float()
    h, w = acts.shape[-2:]
    sh, sw = size
    y0, ystep, ly0, ly1 = _source_weights(h, sh, acts.device)
    x0, xstep, lx0, lx1 = _source_weights(w, sw, acts.device)
    rows_a = acts[..., y0, :]
    rows_b = acts[..., y0 + ystep, :]

    def along_x(rows: torch.Tensor) -> torch.Tensor:
        return lx0 * rows[..., x0] + lx1 * rows[..., x0 + xstep]

    return ly0.view(-1, 1) * along_x(rows_a) + ly1.view(-1, 1) * along_x(rows_b)


def can_cross(maps: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """bool [N, U]: the [N, U, h, w] maps that may hold an upsampled value above their unit's
    threshold (thresholds [U]).

    A bilinear value is a convex combination of four map values, so in exact arithmetic it
    never exceeds the map's maximum; float32 rounding adds at most a relative 6 * 2^-24 (and
    6 * 2^-150 near zero), so a map whose maximum is below T - |T| * 2^-10 - 2^-100 cannot
    cross T (csrc/tally_common.h makes the same argument with a tighter margin). T = 0 needs
    no margin: non-positive values mix to a non-positive one."""
    t = thresholds.double()
    bound = torch.where(t == 0, t, t - t.abs() * 2.0 ** -10 - 2.0 ** -100)
    return maps.amax(dim=(2, 3)).double() > bound[None, :]


def unit_masks(maps: torch.Tensor, thresholds: torch.Tensor, size: Tuple[int, int], *,
               crossing_only: bool = False) -> torch.Tensor:
    """bool [N, U, sh, sw]: the units' masks M_u = upsample_bilinear(A_u) > T_u (strict; the
    tally's M above) of [N, U, h, w] maps, thresholds [U]. ``crossing_only``: upsample only
    the maps that ``can_cross`` (the same masks; most maps lie below a top-quantile threshold,
    so most are never upsampled)."""
    thresholds = thresholds.reshape(-1).to(device=maps.device, dtype=torch.float32)
    if not crossing_only:
        return upsample_bilinear(maps, size) > thresholds.view(1, -1, 1, 1)
    masks = torch.zeros((maps.shape[0], maps.shape[1]) + tuple(size), dtype=torch.bool,
                        device=maps.device)
    rows, units = can_cross(maps, thresholds).nonzero(as_tuple=True)
    if rows.numel():
        up = upsample_bilinear(maps[rows, units][:, None], size)[:, 0]
        masks[rows, units] = up > thresholds[units].view(-1, 1, 1)
    return masks


def tally_reference(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    label_category: torch.Tensor,
    num_labels: int,
    num_categories: int,
) -> TallyOutput:
    """Reference implementation: returns (intersection [U, L], area [N, U], cat_hits [N, U, C]).

    Rejects (ValueError) what the compiled op rejects, with the same messages (checks.py)."""
    check_tally_args(acts, thresholds, labels, label_category, num_labels, num_categories)
    check_tally_values(labels, label_category, num_labels, num_categories)
    n_img, n_units = acts.shape[:2]
    n_planes, sh, sw = labels.shape[1:]
    device = acts.device
    if sh * sw == 0:  # no pixels (and nothing to upsample to)
        masks = torch.zeros(n_img, n_units, 0, dtype=torch.bool, device=device)
    else:
        masks = upsample_bilinear(acts, (sh, sw)) > thresholds.float().view(1, -1, 1, 1)
        masks = masks.reshape(n_img, n_units, sh * sw)
    area = masks.sum(dim=2, dtype=torch.int64)

    intersection = torch.zeros(n_units, num_labels, dtype=torch.int64, device=device)
    cat_hits = torch.zeros(n_img, n_units, num_categories, dtype=torch.int64, device=device)
    flat_labels = labels.reshape(n_img, n_planes, sh * sw).long()
    label_category = label_category.long()
    for n in range(n_img):
        mask_n = masks[n].long()  # [U, sh*sw]
        for j in range(n_planes):
            plane = flat_labels[n, j]
            intersection.index_add_(1, plane, mask_n)
            if num_categories:
                cats = label_category[plane]
                keep = (plane > 0) & (cats >= 0)
                cat_hits[n].index_add_(1, cats[keep], mask_n[:, keep])
    intersection[:, 0] = 0
    return intersection, area, cat_hits


def iou_histogram_reference(
    acts: torch.Tensor, edges: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> torch.Tensor:
    """Reference of ``torch.ops.ndcore.iou_histogram``: returns hist [U, num_labels, B] int64.

    For GAN Dissection's per-(unit, concept) threshold: with ``S = upsample_bilinear(acts)``
    (exactly as in tally) and, for each unit u and value s = S[n, u, p],
    ``j = #{b : s > edges[u, b]} - 1`` (the last edge strictly below s; j = -1, not counted,
    when s <= edges[u, 0] or s is NaN)::

        hist[u, 0, j] += 1                      for every counted pixel, whatever its labels
        hist[u, l, j] += 1                      for every plane k with labels[n, k, p] = l >= 1

    Suffix sums over j give, for the mask M = S > edges[u, j] and any j at once,
    ``sum_{j' >= j} hist[u, l, j'] = |M ∩ L_l|`` (over (pixel, plane) pairs, as tally's
    intersection) and ``sum_{j' >= j} hist[u, 0, j'] = |M|`` (tally's area summed over images),
    so ``IoU(u, l, edges[u, j]) = I / (|M| + |L_l| - I)``. ``edges`` [U, B] must be finite and
    strictly increasing along each unit; labels hold values in [0, num_labels) (0 = none).
    Any floating acts/edges are converted to float32 first, as ``ndcore.ops.iou_histogram`` does.
    """
    check_iou_histogram_args(acts, edges, labels, num_labels)
    edges = edges.float().contiguous()
    check_iou_histogram_values(edges, labels, num_labels)
    n_img, n_units = acts.shape[:2]
    n_planes, sh, sw = labels.shape[1:]
    n_edges = edges.shape[1]
    row = num_labels * n_edges  # bins of one unit
    hist = torch.zeros(n_units * row, dtype=torch.int64, device=acts.device)
    unit_base = (torch.arange(n_units, device=acts.device) * row).view(-1, 1)
    flat_labels = labels.reshape(n_img, n_planes, sh * sw).long()
    for n in range(n_img if sh * sw else 0):
        values = upsample_bilinear(acts[n : n + 1], (sh, sw))[0].reshape(n_units, sh * sw)
        # searchsorted(side="left") = number of edges < s, i.e. with s > e, for every non-NaN s;
        # `s > e` is false for NaN, so NaN counts no edge (searchsorted would put it last).
        below = torch.searchsorted(edges, values.contiguous(), side="left")
        below = below.masked_fill(values.isnan(), 0)
        j = below - 1
        counted = j >= 0
        hist += torch.bincount((unit_base + j)[counted], minlength=hist.numel())
        for k in range(n_planes):
            lab = flat_labels[n, k].view(1, -1)
            keep = counted & (lab > 0)
            hist += torch.bincount((unit_base + lab * n_edges + j)[keep], minlength=hist.numel())
    return hist.view(n_units, num_labels, n_edges)
