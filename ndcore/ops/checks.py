"""Input checks of the pure-PyTorch references and of the fake (meta) kernels.

They mirror csrc/checks.cpp, csrc/tally.cpp and csrc/iou_histogram.cpp rule for rule, in the
same order and with the same messages, so that the reference, the CPU kernel and the CUDA kernel
reject the same inputs with the same ValueError (tests/test_op.py compares them). Two deliberate
differences: the references take any floating acts/thresholds/edges and any integer
label_category and convert them (as the Python wrappers do), where the compiled op wants float32
and int64 exactly; and contiguity is irrelevant here.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch

TALLY = "ndcore::tally"
IOU_HISTOGRAM = "ndcore::iou_histogram"

#: Integer dtypes accepted for labels; values are validated, then narrowed to int32.
LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
#: Largest num_labels (and num_categories): labels are narrowed to int32 after validation.
MAX_LABELS = 2**31 - 1
MAX_CATEGORIES = 2**31 - 1
#: Largest iou_histogram output in bytes (int64 counts); keeps num_labels * B < 2**28.
MAX_HISTOGRAM_BYTES = 2**31
_INT32_MAX = 2**31 - 1


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the name C++ prints (c10::getDtypeNames)."""
    return str(dtype).removeprefix("torch.")


def shape_str(t: torch.Tensor) -> str:
    """'[2, 3]': how c10 prints sizes."""
    return "[" + ", ".join(str(int(s)) for s in t.shape) + "]"


def check_same_device(op: str, tensors: Sequence[Tuple[str, torch.Tensor]]) -> None:
    first_name, first = tensors[0]
    for name, t in tensors:
        if t.device != first.device:
            raise ValueError(
                f"{op}: {name} is on {t.device} but {first_name} is on {first.device}; all "
                "inputs must be on the same device (the op does not move tensors)"
            )


def check_acts(op: str, acts: torch.Tensor) -> None:
    if acts.dim() != 4:
        raise ValueError(f"{op}: acts must be [N, U, h, w], got shape {shape_str(acts)}")


def check_labels_shape(op: str, acts: torch.Tensor, labels: torch.Tensor) -> None:
    if labels.dim() != 4:
        raise ValueError(f"{op}: labels must be [N, P, sh, sw], got shape {shape_str(labels)}")
    if labels.dtype not in LABEL_DTYPES:
        raise ValueError(
            f"{op}: labels must be an integer tensor (uint8, int8, int16, int32 or int64), "
            f"got {dtype_name(labels.dtype)}"
        )
    if labels.shape[0] != acts.shape[0]:
        raise ValueError(f"{op}: acts has {acts.shape[0]} images but labels has {labels.shape[0]}")


def check_num_labels(op: str, num_labels: int) -> None:
    if not 1 <= num_labels <= MAX_LABELS:
        raise ValueError(
            f"{op}: num_labels must lie in [1, {MAX_LABELS}] (label 0 = none), got {num_labels}"
        )


def check_floating(op: str, name: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating-point tensor, got {dtype_name(t.dtype)}")


def check_maps_not_empty(op: str, acts: torch.Tensor, labels: torch.Tensor) -> None:
    has_pixels = labels.shape[2] * labels.shape[3] > 0
    if has_pixels and (acts.shape[2] == 0 or acts.shape[3] == 0):
        raise ValueError(f"{op}: activation maps must not be empty, got shape {shape_str(acts)}")
    if acts.shape[2] * acts.shape[3] >= _INT32_MAX:
        raise ValueError(f"{op}: activation maps must have fewer than 2^31 - 1 values, got shape "
                         f"{shape_str(acts)}")
    if labels.shape[1] * labels.shape[2] * labels.shape[3] >= _INT32_MAX:
        raise ValueError(f"{op}: too many label entries per image")


def check_label_values(op: str, labels: torch.Tensor, num_labels: int) -> None:
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_labels:
            raise ValueError(f"{op}: label values must lie in [0, {num_labels}), got [{lo}, {hi}]")


# ---------------------------------------------------------------------------- tally


def check_tally_args(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    label_category: torch.Tensor,
    num_labels: int,
    num_categories: int,
) -> None:
    """Structural checks of tally (no data read): the reference and the fake kernel."""
    check_same_device(TALLY, [("acts", acts), ("thresholds", thresholds), ("labels", labels),
                              ("label_category", label_category)])
    check_acts(TALLY, acts)
    check_labels_shape(TALLY, acts, labels)
    if thresholds.dim() != 1 or thresholds.shape[0] != acts.shape[1]:
        raise ValueError(f"{TALLY}: thresholds must have shape [{acts.shape[1]}], got shape "
                         f"{shape_str(thresholds)}")
    check_num_labels(TALLY, num_labels)
    if not 0 <= num_categories <= MAX_CATEGORIES:
        raise ValueError(
            f"{TALLY}: num_categories must lie in [0, {MAX_CATEGORIES}], got {num_categories}"
        )
    if label_category.dim() != 1 or label_category.shape[0] != num_labels:
        raise ValueError(f"{TALLY}: label_category must have shape [{num_labels}], got shape "
                         f"{shape_str(label_category)}")
    check_floating(TALLY, "acts", acts)
    check_floating(TALLY, "thresholds", thresholds)
    if label_category.dtype not in LABEL_DTYPES:
        raise ValueError(f"{TALLY}: label_category must be an integer tensor, got "
                         f"{dtype_name(label_category.dtype)}")
    check_maps_not_empty(TALLY, acts, labels)


def check_tally_values(
    labels: torch.Tensor, label_category: torch.Tensor, num_labels: int, num_categories: int
) -> None:
    """Value checks of tally: labels in [0, num_labels), categories in {-1} u [0, C)."""
    check_label_values(TALLY, labels, num_labels)
    lo, hi = int(label_category.min()), int(label_category.max())
    if lo < -1 or hi >= num_categories:
        raise ValueError(f"{TALLY}: label_category values must be -1 or lie in "
                         f"[0, {num_categories}), got [{lo}, {hi}]")


# ---------------------------------------------------------------------------- iou_histogram


def check_iou_histogram_args(
    acts: torch.Tensor, edges: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> None:
    """Structural checks of iou_histogram (no data read): the reference and the fake kernel."""
    op = IOU_HISTOGRAM
    check_same_device(op, [("acts", acts), ("edges", edges), ("labels", labels)])
    check_acts(op, acts)
    check_labels_shape(op, acts, labels)
    if edges.dim() != 2 or edges.shape[0] != acts.shape[1] or edges.shape[1] < 1:
        raise ValueError(f"{op}: edges must have shape [{acts.shape[1]}, B] with B >= 1, got "
                         f"shape {shape_str(edges)}")
    check_num_labels(op, num_labels)
    n_units, n_edges = acts.shape[1], edges.shape[1]
    if n_units * num_labels * n_edges * 8 > MAX_HISTOGRAM_BYTES:
        raise ValueError(f"{op}: the histogram [{n_units}, {num_labels}, {n_edges}] of int64 "
                         "would exceed 2 GiB; split the units or use fewer edges")
    check_floating(op, "acts", acts)
    check_floating(op, "edges", edges)
    check_maps_not_empty(op, acts, labels)


def check_iou_histogram_values(edges: torch.Tensor, labels: torch.Tensor, num_labels: int) -> None:
    """Value checks of iou_histogram (edges already float32): labels in [0, num_labels),
    edges finite and strictly increasing along each unit."""
    check_label_values(IOU_HISTOGRAM, labels, num_labels)
    if not bool(torch.isfinite(edges).all()):
        raise ValueError(f"{IOU_HISTOGRAM}: edges must be finite")
    if not bool((edges[:, 1:] > edges[:, :-1]).all()):
        raise ValueError(f"{IOU_HISTOGRAM}: edges must be strictly increasing along each unit")


VALUES_ABOVE = "ndcore::values_above"
KEPT_CELLS = "ndcore::kept_cells"


def check_select_args(op: str, maps: torch.Tensor, floor: torch.Tensor, floor_name: str) -> None:
    """csrc/select.cpp's check_select_inputs (values_above: ``floor``; kept_cells: ``bound``)."""
    check_same_device(op, [("maps", maps), (floor_name, floor)])
    if maps.dim() != 4:
        raise ValueError(f"{op}: maps must be [B, U, h, w], got shape {shape_str(maps)}")
    if floor.dim() != 1 or floor.shape[0] != maps.shape[1]:
        raise ValueError(f"{op}: {floor_name} must have shape [{maps.shape[1]}], got shape "
                         f"{shape_str(floor)}")
    if maps.dtype != torch.float32:
        raise ValueError(f"{op}: maps must be float32, got {dtype_name(maps.dtype)}")
    if floor.dtype != torch.float32:
        raise ValueError(f"{op}: {floor_name} must be float32, got {dtype_name(floor.dtype)}")
    if op == KEPT_CELLS and maps.numel() > _INT32_MAX:
        raise ValueError(f"{op}: maps has {maps.numel()} values but kept cells are numbered with "
                         f"int32 (at most {_INT32_MAX}); use smaller batches")


FILL_CELLS = "ndcore::fill_cells"


def check_fill_cells_args(rows: torch.Tensor, units: torch.Tensor, positions: torch.Tensor,
                          values: torch.Tensor, fill: torch.Tensor, num_images: int, h: int,
                          w: int) -> None:
    """The structural checks of csrc/select.cpp's check_fill_cells_inputs (no value read)."""
    op = FILL_CELLS
    check_same_device(op, [("rows", rows), ("units", units), ("positions", positions),
                           ("values", values), ("fill", fill)])
    if rows.dim() != 1 or units.dim() != 1 or rows.shape[0] != units.shape[0]:
        raise ValueError(f"{op}: rows and units must be 1-d and of one length, got shapes "
                         f"{shape_str(rows)} and {shape_str(units)}")
    if positions.dim() != 1 or values.dim() != 1 or positions.shape[0] != values.shape[0]:
        raise ValueError(f"{op}: positions and values must be 1-d and of one length, got shapes "
                         f"{shape_str(positions)} and {shape_str(values)}")
    if fill.dim() != 1:
        raise ValueError(f"{op}: fill must be [U], got shape {shape_str(fill)}")
    if num_images < 0 or h < 0 or w < 0:
        raise ValueError(f"{op}: num_images, h and w must be >= 0, got {num_images}, {h}, {w}")
    n_kept, n_units = rows.shape[0], fill.shape[0]
    cells = n_kept * h * w
    if n_kept > num_images * n_units:
        raise ValueError(f"{op}: {n_kept} kept maps but only {num_images} x {n_units} maps")
    if cells > _INT32_MAX:
        raise ValueError(f"{op}: {n_kept} kept maps of {h}x{w} have more cells than int32 "
                         "positions number")
    if rows.dtype != torch.int64 or units.dtype != torch.int64:
        raise ValueError(f"{op}: rows and units must be int64, got {dtype_name(rows.dtype)} and "
                         f"{dtype_name(units.dtype)}")
    if positions.dtype != torch.int32:
        raise ValueError(f"{op}: positions must be int32, got {dtype_name(positions.dtype)}")
    if values.dtype != torch.float32 or fill.dtype != torch.float32:
        raise ValueError(f"{op}: values and fill must be float32, got {dtype_name(values.dtype)} "
                         f"and {dtype_name(fill.dtype)}")


def check_fill_cells_values(rows: torch.Tensor, units: torch.Tensor, positions: torch.Tensor,
                            fill: torch.Tensor, num_images: int, h: int, w: int) -> None:
    """The value checks of fill_cells (after check_fill_cells_args): each kept map once and in
    (row, unit) order, each cell once and in range."""
    op = FILL_CELLS
    n_kept, n_units = rows.shape[0], fill.shape[0]
    cells = n_kept * h * w
    if n_kept:
        if not bool(((rows >= 0) & (rows < num_images)).all()):
            raise ValueError(f"{op}: rows must lie in [0, {num_images})")
        if not bool(((units >= 0) & (units < n_units)).all()):
            raise ValueError(f"{op}: units must lie in [0, {n_units})")
        keys = rows * n_units + units
        if not bool((keys[1:] > keys[:-1]).all()):
            raise ValueError(f"{op}: kept maps must be distinct and in (row, unit) order")
    if positions.numel():
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= cells:
            raise ValueError(f"{op}: positions must lie in [0, {cells}), got [{lo}, {hi}]")
        if not bool((positions[1:] > positions[:-1]).all()):
            raise ValueError(f"{op}: positions must be strictly increasing")
