"""The model stage of a pass: preprocess a batch, run the model, capture the layers' maps.

Maps come out as float32 contiguous [B, U, h, w] whatever the precision the model ran in and
whatever the layer's layout (NCHW, NHWC, tokens, vector: see :mod:`ndcore.capture.layouts`),
checked for NaN / Inf (one line naming the layer, the units and the images). The float32
copy is made in the capture hook: one copy per layer, which is also the copy that protects
the maps from later in-place ops.

Speed settings (none changes what is counted beyond float rounding):

- ``precision`` bf16 / fp16: the forward pass runs under ``torch.autocast``; thresholds and
  counts still come from the float32 copies of the maps.
- ``channels_last``: the model and its input in channels-last memory format; by default on a
  CUDA device for models with 2-D convolutions (tensor cores), off on the CPU (no gain there).
- ``compile``: ``torch.compile`` (True: the default backend, or a backend name). The capture
  hooks are registered before the first call, so they are traced with the model, and the
  early stop after the last captured layer still ends the forward pass.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..capture import LayerCapture, check_layout_keys, declared_layouts, map_notes
from ..data.probe import ProbeBatch
from ..errors import ActivationError, NdcoreError
from ..models import ModelAdapter
from .options import PRECISIONS

Maps = Dict[str, torch.Tensor]

# the autocast dtype of each --precision, in the order of PRECISIONS (None: no autocast)
AUTOCAST = dict(zip(PRECISIONS, (None, torch.bfloat16, torch.float16)))


class ModelRunner:
    """Runs a model adapter on probe batches, on one device.

    ``layouts`` are the user's ``--layout`` overrides ({layer or pattern: spec}); they win over
    the adapter's ``layouts`` and torchvision recognition. ``precision`` is one of
    :data:`~.options.PRECISIONS` (checked with the run's options). The first batch warns about
    layers whose maps are 1x1, and, given ``images`` and ``quantile`` (the probe set's size
    and the run's top quantile), about maps too small to threshold.
    """

    def __init__(self, adapter: ModelAdapter, device: torch.device,
                 precision: str = "fp32", layouts: Optional[Mapping[str, str]] = None,
                 compile: Union[bool, str] = False, channels_last: Optional[bool] = None,
                 images: Optional[int] = None, quantile: Optional[float] = None,
                 warn: bool = True) -> None:
        self.adapter = adapter
        self.device = torch.device(device)
        self.autocast_dtype = AUTOCAST[precision]
        self.overrides = dict(layouts or {})
        self.images, self.quantile = images, quantile
        module = adapter.module.eval().to(self.device)
        if channels_last is None:
            channels_last = self.device.type == "cuda" and _has_conv2d(module)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        self.compiled = None
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self.compiled = torch.compile(module, backend=backend)
        self.input_size = _fixed_input_size(module)
        self.layouts: Dict[str, str] = {}  # layer -> layout, as decided by the forward passes
        self.warn = warn
        # layer -> the notes (map_notes) warned about on its first batch: the run records them
        # as the layer's caveats, and does not warn about them again
        self.notes: Dict[str, List[str]] = {}

    @property
    def module(self) -> nn.Module:
        return self.adapter.module

    @contextlib.contextmanager
    def capturing(self, layers: Sequence[str]) -> Iterator[Callable[[ProbeBatch], Maps]]:
        """``with runner.capturing(layers) as run: maps = run(batch)`` (hooks removed after)."""
        specs = [self.overrides, getattr(self.adapter, "layouts", None)]  # the user's first
        with LayerCapture(self.module, layers, layouts=specs, dtype=torch.float32,
                          forward=self.compiled) as capture:
            yield lambda batch: self._run(capture, batch)

    def _run(self, capture: LayerCapture, batch: ProbeBatch) -> Maps:
        x = self.adapter.preprocess(batch.images)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise NdcoreError(
                f"{self.adapter.spec} takes {h}x{w} inputs but gets {x.shape[-2]}x{x.shape[-1]}; "
                f"give --resize {h}x{w}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.autocast_dtype) \
            if self.autocast_dtype is not None else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            outputs = self._forward(capture, x)
        try:
            maps = {name: finite_maps(name, a, batch) for name, a in outputs.items()}
        except ActivationError as e:
            if self.autocast_dtype is torch.float16:
                raise ActivationError(f"{e}; under --precision fp16 values above 65504 "
                                      "overflow: try --precision bf16") from None
            raise
        for name, a in maps.items():
            self.layouts[name] = str(capture.layouts[name])
            if self.warn and name not in self.notes:
                self.notes[name] = map_notes(name, capture.layouts[name], tuple(a.shape[2:]),
                                             self.images, self.quantile)
                for note in self.notes[name]:
                    warnings.warn(note, stacklevel=2)
        return maps

    def _forward(self, capture: LayerCapture, x: torch.Tensor) -> Maps:
        if self.compiled is None:
            return capture(x)
        try:
            return capture(x)
        except NdcoreError:
            raise
        except Exception as e:
            if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise NdcoreError(f"--compile: torch.compile failed on {self.adapter.spec} "
                              f"({type(e).__name__}: {first}); run without --compile") from None


def decide_layouts(adapter: ModelAdapter, layers: Sequence[str],
                   overrides: Optional[Mapping[str, str]] = None, source=None) -> Dict[str, str]:
    """Checks the layer names and ``--layout`` entries, then decides every layer's layout on
    the source's first image (one forward pass of one image, where the model is): a layer
    whose layout cannot be decided stops the run here, before any work or file. Returns
    {layer: layout} ({} when there is no source, or its first image cannot be read: the
    first batch then decides, and reports a broken image as usual)."""
    overrides = dict(overrides or {})
    check_layout_keys(overrides, layers)
    declared_layouts(adapter.module, layers, overrides, getattr(adapter, "layouts", None))
    if source is None or len(source) == 0:
        return {}
    try:
        item = source.read(0, image=True, labels=False)
    except Exception:
        return {}
    if getattr(item, "error", None) or getattr(item, "image", None) is None:
        return {}
    param = next(iter(adapter.module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    images = torch.from_numpy(np.ascontiguousarray(item.image)).permute(2, 0, 1)[None]
    batch = ProbeBatch(indices=torch.zeros(1, dtype=torch.int64), images=images.to(device),
                       labels=torch.zeros(1, 0, 1, 1, dtype=torch.int32),
                       image_labels=torch.zeros(1, 0, dtype=torch.int64),
                       annotated=torch.zeros(1, 0, dtype=torch.bool))
    runner = ModelRunner(adapter, device, layouts=overrides, channels_last=False, warn=False)
    with runner.capturing(layers) as run:
        run(batch)
    return dict(runner.layouts)


def finite_maps(name: str, maps: torch.Tensor, batch: ProbeBatch) -> torch.Tensor:
    """float32 contiguous maps (a copy only if they are not already); refuses NaN / Inf with
    one clear line."""
    maps = maps.detach().to(dtype=torch.float32, memory_format=torch.contiguous_format)
    # One reduction, in which NaN and +-inf propagate, rather than a mask of the whole batch.
    if maps.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(maps))).all()):
        bad = (~torch.isfinite(maps)).flatten(2).any(2)
        units = sorted(set(bad.nonzero()[:, 1].tolist()))
        images = sorted(set(batch.indices[bad.any(1).to(batch.indices.device)].tolist()))
        raise ActivationError(
            f"layer {name!r}: NaN or Inf activations in unit(s) {units[:10]} on image(s) "
            f"{images[:10]} (check the weights and the input normalisation)"
        )
    return maps


def _has_conv2d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _fixed_input_size(module: nn.Module):
    """(h, w) that a torchvision ViT insists on (it asserts otherwise), else None."""
    try:
        from torchvision.models.vision_transformer import VisionTransformer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(module, VisionTransformer):
        return (int(module.image_size), int(module.image_size))
    return None
