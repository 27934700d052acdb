"""The compiled ops: the fused tally and iou_histogram (fake kernels and dispatch here) and the
selection ops values_above, kept_cells and fill_cells (select.py).

``tally(...)`` and ``iou_histogram(...)`` run ``torch.ops.ndcore.*`` (C++ on the CPU, CUDA on
GPUs) from the compiled extension ``ndcore._C``: the prebuilt one when its build record matches
the running torch, otherwise one compiled at first use into a per-user cache (extension.py,
jit.py). The pure-PyTorch references run instead only when the user accepts them
(``NDCORE_ALLOW_SLOW=1``, with a warning); ``NDCORE_REQUIRE_EXTENSION=1`` makes any fallback an
ImportError (CI). See ``reference.py`` for the exact semantics.
The wrappers convert dtypes but never move tensors between devices: inputs on different devices
raise ValueError, like the ops themselves.
"""

from __future__ import annotations

import torch

from .checks import check_iou_histogram_args, check_tally_args
from .extension import REQUIRE_ENV, _C, extension_info
from .reference import TallyOutput, iou_histogram_reference, tally_reference, upsample_bilinear
from .select import (fill_cells, fill_cells_reference, kept_cells, kept_cells_reference,
                     values_above, values_above_reference)

__all__ = ["tally", "tally_reference", "iou_histogram", "iou_histogram_reference",
           "upsample_bilinear", "extension_info", "TallyOutput", "values_above",
           "values_above_reference", "kept_cells", "kept_cells_reference", "fill_cells",
           "fill_cells_reference", "REQUIRE_ENV"]


if _C is not None:

    # The fakes run the structural checks (devices, shapes) but cannot read values. The device
    # check matters here: the dispatcher sends a mix of CPU and meta tensors to the fake.

    @torch.library.register_fake("ndcore::tally")
    def _tally_fake(acts, thresholds, labels, label_category, num_labels, num_categories):
        check_tally_args(acts, thresholds, labels, label_category, num_labels, num_categories)
        n_img, n_units = acts.shape[:2]
        return (
            acts.new_empty((n_units, num_labels), dtype=torch.int64),
            acts.new_empty((n_img, n_units), dtype=torch.int64),
            acts.new_empty((n_img, n_units, num_categories), dtype=torch.int64),
        )

    @torch.library.register_fake("ndcore::iou_histogram")
    def _iou_histogram_fake(acts, edges, labels, num_labels):
        check_iou_histogram_args(acts, edges, labels, num_labels)
        return acts.new_empty((acts.shape[1], num_labels, edges.shape[1]), dtype=torch.int64)


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """Real tensors as contiguous float32, on their own device (complex ones are left for the op
    to reject)."""
    return t.contiguous() if t.is_complex() else t.to(dtype=torch.float32).contiguous()


def tally(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    label_category: torch.Tensor,
    num_labels: int,
    num_categories: int,
    *,
    use_reference: bool = False,
) -> TallyOutput:
    """Per-batch counts of the thresholded, upsampled unit masks against the label planes.

    Returns ``(intersection [U, L], area [N, U], cat_hits [N, U, C])``, all int64, on
    ``acts.device``. All inputs must be on that device (ValueError otherwise: nothing is moved).
    Dtypes are converted as the op needs: acts (float32/16, bfloat16...) and thresholds to
    contiguous float32, label_category (any integer dtype) to int64; labels may have any integer
    dtype (uint8, int8, int16, int32, int64) and are validated before the op narrows them to
    int32. ``use_reference=True`` runs the pure-PyTorch reference instead.
    """
    acts = _as_float32(acts)
    thresholds = _as_float32(thresholds)
    labels = labels.contiguous()
    if not label_category.is_floating_point() and label_category.dtype != torch.bool:
        label_category = label_category.to(dtype=torch.int64)
    label_category = label_category.contiguous()
    if use_reference or _C is None:
        return tally_reference(acts, thresholds, labels, label_category, num_labels, num_categories)
    return torch.ops.ndcore.tally(
        acts, thresholds, labels, label_category, num_labels, num_categories
    )


def iou_histogram(
    acts: torch.Tensor,
    edges: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    *,
    use_reference: bool = False,
) -> torch.Tensor:
    """Per-(unit, label) histograms of the upsampled activations over per-unit threshold edges.

    ``acts`` [N, U, h, w] and ``edges`` [U, B] are converted to float32 (edges must then be
    finite and strictly increasing along each unit, B >= 1), ``labels``
    [N, P, sh, sw] of any integer dtype with values in [0, num_labels) (0 = none). Returns
    ``hist`` [U, num_labels, B] int64 on ``acts.device`` (see
    ``reference.iou_histogram_reference``): suffix sums over the last axis give, for threshold
    ``edges[u, j]``, the intersection with each label (l >= 1) and the mask area (l = 0).
    All inputs must be on one device; the output must fit in 2 GiB (ValueError otherwise).
    Accumulate it over batches by adding. ``use_reference=True`` runs the reference instead.
    """
    acts = _as_float32(acts)
    edges = _as_float32(edges)
    labels = labels.contiguous()
    if use_reference or _C is None:
        return iou_histogram_reference(acts, edges, labels, num_labels)
    return torch.ops.ndcore.iou_histogram(acts, edges, labels, num_labels)
