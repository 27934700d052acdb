"""Pure-PyTorch reference of the fused tally op.

This module *defines* the semantics of ``torch.ops.ndcore.tally``; the C++ (CPU) and CUDA kernels
must agree with it exactly (all counts are int64). It is also the fallback when the compiled
extension is missing, and the oracle of the tests.

Semantics, for a batch of N images and U units of one layer::

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
float32, so that values equal to a threshold compare identically.
"""

from __future__ import annotations

from typing import Tuple

import torch

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


def check_tally_args(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    label_category: torch.Tensor,
    num_labels: int,
    num_categories: int,
) -> None:
    """Shape and dtype checks shared by the reference and the Python wrapper."""
    if acts.dim() != 4:
        raise ValueError(f"tally: acts must be [N, U, h, w], got shape {tuple(acts.shape)}")
    if labels.dim() != 4:
        raise ValueError(f"tally: labels must be [N, P, sh, sw], got shape {tuple(labels.shape)}")
    if labels.shape[0] != acts.shape[0]:
        raise ValueError(
            f"tally: acts has {acts.shape[0]} images but labels has {labels.shape[0]}"
        )
    if thresholds.shape != (acts.shape[1],):
        raise ValueError(
            f"tally: thresholds must have shape ({acts.shape[1]},), got {tuple(thresholds.shape)}"
        )
    if label_category.shape != (num_labels,):
        raise ValueError(
            f"tally: label_category must have shape ({num_labels},), "
            f"got {tuple(label_category.shape)}"
        )
    if labels.dtype not in (torch.int16, torch.int32, torch.int64):
        raise ValueError(f"tally: labels must be an integer tensor, got {labels.dtype}")
    if num_categories < 0:
        raise ValueError("tally: num_categories must be >= 0")


def tally_reference(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    label_category: torch.Tensor,
    num_labels: int,
    num_categories: int,
) -> TallyOutput:
    """Reference implementation: returns (intersection [U, L], area [N, U], cat_hits [N, U, C])."""
    check_tally_args(acts, thresholds, labels, label_category, num_labels, num_categories)
    n_img, n_units = acts.shape[:2]
    n_planes, sh, sw = labels.shape[1:]
    device = acts.device
    masks = upsample_bilinear(acts, (sh, sw)) > thresholds.float().view(1, -1, 1, 1)
    masks = masks.reshape(n_img, n_units, sh * sw)
    area = masks.sum(dim=2, dtype=torch.int64)

    intersection = torch.zeros(n_units, num_labels, dtype=torch.int64, device=device)
    cat_hits = torch.zeros(n_img, n_units, num_categories, dtype=torch.int64, device=device)
    flat_labels = labels.reshape(n_img, n_planes, sh * sw).long()
    if flat_labels.numel() and (flat_labels.min() < 0 or flat_labels.max() >= num_labels):
        raise ValueError(f"tally: label values must lie in [0, {num_labels})")
    label_category = label_category.long().to(device)
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
