"""The model stage of a pass: preprocess a batch, run the model, capture the layers' maps.

Maps come out as float32 [B, U, h, w] whatever the precision the model ran in, checked for
NaN / Inf (one line naming the layer, the units and the images).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, Sequence

import torch

from ..capture import LayerCapture
from ..data.probe import ProbeBatch
from ..errors import ActivationError
from ..models import ModelAdapter

Maps = Dict[str, torch.Tensor]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class ModelRunner:
    """Runs a model adapter on probe batches, on one device."""

    def __init__(self, adapter: ModelAdapter, device: torch.device,
                 precision: str = "fp32") -> None:
        self.adapter = adapter
        self.device = device
        self.autocast_dtype = PRECISIONS[precision]
        adapter.module.eval().to(device)

    @contextlib.contextmanager
    def capturing(self, layers: Sequence[str]) -> Iterator[Callable[[ProbeBatch], Maps]]:
        """``with runner.capturing(layers) as run: maps = run(batch)`` (hooks removed after)."""
        with LayerCapture(self.adapter.module, layers) as capture:
            yield lambda batch: self._run(capture, batch)

    def _run(self, capture: LayerCapture, batch: ProbeBatch) -> Maps:
        x = self.adapter.preprocess(batch.images)
        autocast = torch.autocast(self.device.type, dtype=self.autocast_dtype) \
            if self.autocast_dtype is not None else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            outputs = capture(x)
        return {name: finite_maps(name, a, batch) for name, a in outputs.items()}


def finite_maps(name: str, maps: torch.Tensor, batch: ProbeBatch) -> torch.Tensor:
    """float32 contiguous copy of a layer's maps; refuses NaN / Inf with one clear line."""
    maps = maps.detach().float().contiguous()
    if not bool(torch.isfinite(maps).all()):
        bad = (~torch.isfinite(maps)).flatten(2).any(2)
        units = sorted(set(bad.nonzero()[:, 1].tolist()))
        images = sorted(set(batch.indices[bad.any(1).to(batch.indices.device)].tolist()))
        raise ActivationError(
            f"layer {name!r}: NaN or Inf activations in unit(s) {units[:10]} on image(s) "
            f"{images[:10]} (check the weights and the input normalisation)"
        )
    return maps
