"""What ndcore needs to know about a generator: its latent shape and its output range.

A model adapter is a generator when it says so: its ``latent_shape`` (or its module's
``latent_shape`` attribute, e.g. ``(100, 1, 1)``), which ``--latent-shape`` overrides.
Outputs are RGB in [-1, 1] unless the adapter's ``output_range`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

from ..errors import NdcoreError
from ..models import ModelAdapter


@dataclass(frozen=True)
class GeneratorInfo:
    latent_shape: Tuple[int, ...]
    output_range: Tuple[float, float] = (-1.0, 1.0)


def generator_info(adapter: ModelAdapter,
                   latent_shape: Optional[Sequence[int]] = None) -> Optional[GeneratorInfo]:
    """The adapter's generator description, or None when it is not a generator."""
    shape = latent_shape or getattr(adapter, "latent_shape", None) or \
        getattr(adapter.module, "latent_shape", None)
    if shape is None:
        return None
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise NdcoreError(f"{adapter.spec}: latent_shape {shape!r} is not a tuple of "
                          "integers") from None
    if not shape or min(shape) < 1:
        raise NdcoreError(f"{adapter.spec}: latent_shape {shape!r} must be positive sizes")
    lo, hi = getattr(adapter, "output_range", None) or \
        getattr(adapter.module, "output_range", None) or (-1.0, 1.0)
    if not hi > lo:
        raise NdcoreError(f"{adapter.spec}: output_range ({lo}, {hi}) is empty")
    return GeneratorInfo(shape, (float(lo), float(hi)))


def require_generator(adapter: ModelAdapter,
                      latent_shape: Optional[Sequence[int]] = None) -> GeneratorInfo:
    info = generator_info(adapter, latent_shape)
    if info is None:
        raise NdcoreError(
            f"{adapter.spec}: not a generator (no latent_shape); a python: factory's module "
            "needs a `latent_shape` attribute such as (100, 1, 1), or give --latent-shape")
    return info


def to_images(output, info: GeneratorInfo, spec: str) -> torch.Tensor:
    """A generator's output -> uint8 RGB [B, 3, H, W]; refuses outputs that are no images."""
    if not isinstance(output, torch.Tensor) or output.dim() != 4 or output.shape[1] != 3:
        what = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise NdcoreError(f"{spec}: the generator's output is {what}, not an RGB image batch "
                          "[B, 3, H, W]")
    lo, hi = info.output_range
    x = (output.detach().float() - lo) * (255.0 / (hi - lo))
    return x.round_().clamp_(0, 255).to(torch.uint8)
