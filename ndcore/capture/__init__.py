"""Capturing (and optionally editing) named layers of a model in one forward pass.

Hooks are always removed in a ``finally``. When only captured outputs are needed, the forward
pass stops right after the last requested layer has run.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..errors import LayerError, suggest

Edit = Callable[[torch.Tensor], torch.Tensor]


class _StopForward(Exception):
    pass


def hookable_layers(model: nn.Module) -> List[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_layers(model: nn.Module, names: Sequence[str]) -> Dict[str, nn.Module]:
    """Map dotted module paths to modules, with a helpful error for unknown names."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or not name:
            raise LayerError(
                f"layer {name!r} not found in {type(model).__name__}"
                f"{suggest(name, hookable_layers(model))}; `ndcore layers MODEL` lists them"
            )
        out[name] = modules[name]
    return out


class LayerCapture:
    """Context manager: ``with LayerCapture(model, ["layer3", "layer4"]) as cap: cap(x)``
    returns {layer: output}. ``edits`` maps a layer to a function applied to its output
    (interventions); ``stop_early`` ends the forward pass after the last captured layer."""

    def __init__(self, model: nn.Module, layers: Sequence[str],
                 edits: Optional[Dict[str, Edit]] = None, stop_early: bool = True) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = resolve_layers(model, self.layers)
        self.edits = edits or {}
        self.stop_early = stop_early and not self.edits
        self.outputs: Dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "LayerCapture":
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if name in self.outputs:
                raise LayerError(
                    f"layer {name!r} ran twice in one forward pass; ndcore needs one map per image"
                )
            if name in self.edits:
                output = self.edits[name](output)
            last = len(self.outputs) + 1 == len(self.layers)
            if self.stop_early and last:
                self.outputs[name] = output
                raise _StopForward
            # The forward pass goes on: keep a copy, since a later in-place op (e.g. a
            # ReLU(inplace=True) right after a conv) would otherwise change what we captured.
            self.outputs[name] = output.clone() if isinstance(output, torch.Tensor) else output
            return output if name in self.edits else None

        return hook

    def __call__(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        self.outputs = {}
        try:
            self.model(x)
        except _StopForward:
            pass
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise LayerError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
        for name, out in self.outputs.items():
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                what = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise LayerError(
                    f"layer {name!r} outputs {what}, not a 4-D [N, C, H, W] feature map; "
                    "choose a convolutional layer"
                )
        return self.outputs


def layer_shapes(model: nn.Module, input_size=(224, 224), device="cpu") -> Dict[str, tuple]:
    """Output shape of every hookable module for a 1-image input (non-tensors get None)."""
    shapes: Dict[str, tuple] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inp, out, name=name):
            shapes.setdefault(name, tuple(out.shape) if isinstance(out, torch.Tensor) else None)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    return shapes
