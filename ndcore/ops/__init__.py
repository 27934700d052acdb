"""The fused tally op: loading of the compiled extension, fake registration, dispatch.

``tally(...)`` runs ``torch.ops.ndcore.tally`` (C++ on the CPU, CUDA on GPUs) when the compiled
extension ``ndcore._C`` is importable, and otherwise the pure-PyTorch reference with a warning.
See ``reference.py`` for the exact semantics. Set ``NDCORE_REQUIRE_EXTENSION=1`` to make a
missing extension an ImportError instead (CI does).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Optional

import torch

from .reference import TallyOutput, check_tally_args, tally_reference, upsample_bilinear

__all__ = ["tally", "tally_reference", "upsample_bilinear", "extension_info", "TallyOutput"]

REQUIRE_ENV = "NDCORE_REQUIRE_EXTENSION"


def _load_extension() -> tuple[Optional[Any], Optional[str]]:
    """Imports ndcore._C (which registers torch.ops.ndcore.tally); returns (module, error)."""
    try:
        from ndcore import _C  # type: ignore[attr-defined]
    except ImportError as exc:
        error = f"{type(exc).__name__}: {exc}"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            raise ImportError(
                f"ndcore: the compiled extension ndcore._C is required ({REQUIRE_ENV} is set) "
                f"but could not be imported: {error}"
            ) from exc
        warnings.warn(
            f"ndcore: compiled extension ndcore._C not available ({error}); falling back to the "
            "slow pure-PyTorch tally. Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, error
    return _C, None


_C, _LOAD_ERROR = _load_extension()

if _C is not None:

    @torch.library.register_fake("ndcore::tally")
    def _tally_fake(acts, thresholds, labels, label_category, num_labels, num_categories):
        n_img, n_units = acts.shape[:2]
        return (
            acts.new_empty((n_units, num_labels), dtype=torch.int64),
            acts.new_empty((n_img, n_units), dtype=torch.int64),
            acts.new_empty((n_img, n_units, num_categories), dtype=torch.int64),
        )


def extension_info() -> Dict[str, Any]:
    """What was compiled: loaded, error (import error or None), cuda, openmp, cuda_version."""
    if _C is None:
        return {"loaded": False, "error": _LOAD_ERROR, "cuda": False, "openmp": False,
                "cuda_version": None}
    return {
        "loaded": True,
        "error": None,
        "cuda": bool(_C.compiled_with_cuda()),
        "openmp": bool(_C.compiled_with_openmp()),
        "cuda_version": _C.cuda_version() or None,
    }


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

    Returns ``(intersection [U, L], area [N, U], cat_hits [N, U, C])``, all int64, computed on
    ``acts.device``. Inputs are converted as the kernels need: acts (float32/16, bfloat16) to
    contiguous float32, labels to int32, thresholds to float32, label_category to int64, all on
    the device of ``acts``. ``use_reference=True`` runs the pure-PyTorch reference instead.
    """
    check_tally_args(acts, thresholds, labels, label_category, num_labels, num_categories)
    device = acts.device
    acts = acts.to(dtype=torch.float32).contiguous()
    thresholds = thresholds.to(device=device, dtype=torch.float32).contiguous()
    labels = labels.to(device=device, dtype=torch.int32).contiguous()
    label_category = label_category.to(device=device, dtype=torch.int64).contiguous()
    if use_reference or _C is None:
        return tally_reference(acts, thresholds, labels, label_category, num_labels, num_categories)
    return torch.ops.ndcore.tally(
        acts, thresholds, labels, label_category, num_labels, num_categories
    )
