"""Unit edits (interventions): ablate units (set them to 0) or insert them (set them to a value),
everywhere or only inside a region, at one layer.

An edit is a function of a layer's maps [B, C, h, w] (channel = unit) that returns the edited
maps. Regions are masks at the generated image's resolution (a rectangle, or painted pixels);
a layer cell is edited when its footprint in the image holds any pixel of the region.

    with ndcore.edit(generator, {"main.6": Ablate([2, 7])}):
        images = generator(z)          # the edited generator
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...capture import resolve_layers
from ...errors import NdcoreError

Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, end exclusive


def box_mask(box: Box, size: Tuple[int, int]) -> torch.Tensor:
    """bool [H, W] of a rectangle in an image of ``size`` (H, W); refuses boxes outside it."""
    x0, y0, x1, y1 = box
    h, w = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise NdcoreError(f"--region {x0},{y0},{x1},{y1}: must lie inside the {w}x{h} image "
                          "(0 <= X0 < X1 <= width, 0 <= Y0 < Y1 <= height)")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def cells_of(mask: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """A pixel mask [H, W] -> the layer cells [h, w] whose footprint holds any of its pixels."""
    m = mask.to(torch.float32)[None, None]
    return F.adaptive_max_pool2d(m, size)[0, 0] > 0


@dataclass
class UnitEdit:
    """Base: the units to edit, and an optional region mask at image resolution."""

    units: Sequence[int]
    region: Optional[torch.Tensor] = None  # bool [H, W] at the generated image's resolution
    _cells: Dict[Tuple[int, int, str], torch.Tensor] = field(default_factory=dict, repr=False)

    def check(self, num_units: int, layer: str) -> None:
        bad = [u for u in self.units if not 0 <= int(u) < num_units]
        if bad:
            raise NdcoreError(f"layer {layer!r} has units 0..{num_units - 1}; unit {bad[0]} is "
                              "out of range")
        if not len(self.units):
            raise NdcoreError(f"layer {layer!r}: no units to edit")

    def where(self, maps: torch.Tensor) -> Optional[torch.Tensor]:
        """bool [h, w] of the cells to edit (None: all of them)."""
        if self.region is None:
            return None
        key = (maps.shape[-2], maps.shape[-1], str(maps.device))
        if key not in self._cells:
            self._cells[key] = cells_of(self.region, tuple(maps.shape[-2:])).to(maps.device)
        return self._cells[key]

    def values(self, maps: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        units = torch.as_tensor(list(self.units), device=maps.device, dtype=torch.long)
        new = self.values(maps).to(maps.dtype)  # [len(units)] or broadcastable to [B, k, h, w]
        if new.dim() == 1:
            new = new.view(1, -1, 1, 1)
        where = self.where(maps)
        out = maps.clone()
        old = out[:, units]
        out[:, units] = new.expand_as(old) if where is None else torch.where(where, new, old)
        return out


@dataclass
class Ablate(UnitEdit):
    """Set units to 0 (inside the region, if any)."""

    def values(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(self.units), device=maps.device)


@dataclass
class Insert(UnitEdit):
    """Set units to ``value`` (one number, or one per unit) inside the region, if any."""

    value: Union[float, Sequence[float], torch.Tensor] = 1.0

    def values(self, maps: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(self.value, dtype=torch.float32, device=maps.device).reshape(-1)
        if v.numel() not in (1, len(self.units)):
            raise NdcoreError(f"insert: {v.numel()} values for {len(self.units)} units")
        return v.expand(len(self.units)) if v.numel() == 1 else v


@contextlib.contextmanager
def edit(model: nn.Module, edits: Dict[str, UnitEdit]) -> Iterator[nn.Module]:
    """Apply ``edits`` ({layer: edit}) to ``model`` inside the ``with`` block (hooks always
    removed after), like baukit's ``Trace`` with an ``edit_output``. Layers must output
    [B, C, h, w] maps (a generator's convolutional layers)."""
    modules = resolve_layers(model, list(edits))
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                raise NdcoreError(f"layer {name!r}: edits need [B, C, h, w] outputs, got "
                                  f"{tuple(getattr(output, 'shape', ()))}")
            edits[name].check(output.shape[1], name)
            return edits[name](output)
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield model
    finally:
        for h in handles:
            h.remove()
