"""Loading of the compiled extension ndcore._C (importing it registers torch.ops.ndcore.*).

When it cannot be imported, the ops fall back to their pure-PyTorch references with a warning;
``NDCORE_REQUIRE_EXTENSION=1`` makes that an ImportError instead (CI sets it).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Optional

REQUIRE_ENV = "NDCORE_REQUIRE_EXTENSION"


def _load_extension() -> tuple[Optional[Any], Optional[str]]:
    """Imports ndcore._C (which registers torch.ops.ndcore.*); returns (module, error)."""
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
            "slow pure-PyTorch ops. Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None, error
    return _C, None


_C, _LOAD_ERROR = _load_extension()


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
