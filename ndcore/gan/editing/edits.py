"""Unit edits (interventions): ablate units (set them to 0) or insert them (set them to a value),
everywhere or only inside a region, at one layer.

An edit is a function of a layer's maps [B, C, h, w] (channel = unit) that returns the edited
maps. :func:`edit` hands it those maps through the layer's layout, exactly as dissection reads
them (:mod:`ndcore.capture.layouts`: ``nchw``, ``nhwc``, ``tokens[:skip=K][:grid=HxW]``,
``vector``), and writes the result back into the layer's own layout; so unit k is the unit k of
the dissection in every layout. Regions are masks at the generated image's resolution (a
rectangle, or painted pixels); a layer cell is edited when its footprint in the image holds any
pixel of the region.

    with ndcore.edit(generator, {"main.6": Ablate([2, 7])}):
        images = generator(z)          # the edited generator

Insert values: ``Insert(units, value=V)`` needs its value (a number, or one per unit). The
default of ``ndcore intervene --insert`` and ``ndcore.intervene(..., insert=True)``, each
unit's threshold in the dissection run, is ``Insert.at_thresholds(run, layer, units)``.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...capture import decide, declared_layouts, resolve_layers
from ...capture.hooks import LayoutArg, spec_list
from ...errors import LayerError, NdcoreError

Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, end exclusive
Values = Union[float, Sequence[float], torch.Tensor]
WHAT_AN_EDIT_IS = "ndcore.Ablate(units) or ndcore.Insert(units, value=...)"


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


def _unit_list(units, what: str) -> List[int]:
    """``units`` as a list of ints; refuses what is not a sequence of whole numbers (a bool, a
    float or a string would otherwise index the wrong units, or fail deep inside torch)."""
    if isinstance(units, torch.Tensor):
        units = units.reshape(-1).tolist()
    if isinstance(units, (str, bytes)) or not hasattr(units, "__iter__"):
        raise NdcoreError(f"{what}: units must be a list of unit numbers (0-based), got "
                          f"{units!r}")
    out = []
    for u in units:
        if isinstance(u, bool) or not isinstance(u, numbers.Integral):
            raise NdcoreError(f"{what}: units must be whole numbers (0-based), got {u!r}")
        out.append(int(u))
    return out


@dataclass
class UnitEdit:
    """Base: the units to edit, and an optional region mask at image resolution."""

    units: Sequence[int]
    region: Optional[torch.Tensor] = None  # bool [H, W] at the generated image's resolution
    # cells per map size, worked out once (not an argument: Insert(units, region, value) reads
    # its third argument as the value)
    _cells: Dict[Tuple[int, int, str], torch.Tensor] = field(default_factory=dict, repr=False,
                                                             init=False)

    def __post_init__(self) -> None:
        self.units = _unit_list(self.units, type(self).__name__)
        if self.region is not None:
            region = torch.as_tensor(self.region)
            if region.dim() != 2:
                raise NdcoreError(f"{type(self).__name__}: region must be a bool mask [H, W] at "
                                  f"the generated image's resolution, got shape "
                                  f"{list(region.shape)}")
            self.region = region.bool()

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
    """Set units to ``value`` (one finite number, or one per unit) inside the region, if any.

    ``value`` is required: the Python API has no dissection run to read thresholds from.
    :meth:`at_thresholds` inserts each unit at its threshold in a run, as ``ndcore intervene
    --insert`` (no value) does."""

    value: Optional[Values] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value is None:
            raise NdcoreError("Insert: give value= (a number, or one per unit), or use "
                              "ndcore.Insert.at_thresholds(run, layer, units) for each unit's "
                              "threshold in a dissection run (the default of `ndcore intervene "
                              "--insert`)")
        try:
            v = torch.as_tensor(self.value, dtype=torch.float32).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise NdcoreError(f"Insert: value must be a number or one number per unit, got "
                              f"{self.value!r}") from None
        if v.numel() == 0 or not bool(torch.isfinite(v).all()):
            # NaN or Inf would go on through the generator and come out as NaN images
            bad = v[~torch.isfinite(v)]
            raise NdcoreError(f"Insert: value {bad[0].item() if bad.numel() else '[]'} is not "
                              "a finite number; insert finite values")

    @classmethod
    def at_thresholds(cls, run, layer: str, units: Sequence[int],
                      region: Optional[torch.Tensor] = None) -> "Insert":
        """Insert ``units`` of ``layer`` at each one's threshold (its top-quantile activation
        level) in the dissection ``run`` (a run directory or a loaded DissectionResult)."""
        from ...results import DissectionResult

        result = run if isinstance(run, DissectionResult) else DissectionResult.load(Path(run))
        if layer not in result.layers:
            raise NdcoreError(f"Insert.at_thresholds: the run has no layer {layer!r}; it has "
                              f"{', '.join(result.layers)}")
        lr = result.layers[layer]
        probe = Ablate(units)  # checks the units' type and range before indexing thresholds
        probe.check(lr.num_units, layer)
        return cls(probe.units, region, value=[float(lr.thresholds[u]) for u in probe.units])

    def check(self, num_units: int, layer: str) -> None:
        super().check(num_units, layer)
        n = torch.as_tensor(self.value).numel()
        if n not in (1, len(self.units)):
            raise NdcoreError(f"layer {layer!r}: Insert has {n} values for {len(self.units)} "
                              "units (give one value, or one per unit)")

    def values(self, maps: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(self.value, dtype=torch.float32, device=maps.device).reshape(-1)
        if v.numel() not in (1, len(self.units)):
            raise NdcoreError(f"insert: {v.numel()} values for {len(self.units)} units")
        return v.expand(len(self.units)) if v.numel() == 1 else v


def _checked(edits) -> Dict[str, UnitEdit]:
    """``edits`` as {layer: UnitEdit}, or a one-line error saying what an edit must be."""
    if not isinstance(edits, Mapping):
        raise NdcoreError(f"ndcore.edit: edits must be a dict {{layer: edit}}, got "
                          f"{type(edits).__name__}; an edit is {WHAT_AN_EDIT_IS}")
    for name, e in edits.items():
        if not isinstance(name, str):
            raise NdcoreError(f"ndcore.edit: layer names are strings (dotted module paths), got "
                              f"{name!r}")
        if not isinstance(e, UnitEdit):
            raise NdcoreError(f"ndcore.edit: the edit of layer {name!r} is a "
                              f"{type(e).__name__} ({e!r:.40}); an edit is {WHAT_AN_EDIT_IS}")
    return dict(edits)


@contextlib.contextmanager
def edit(model: nn.Module, edits: Mapping[str, UnitEdit],
         layouts: LayoutArg = None) -> Iterator[nn.Module]:
    """Apply ``edits`` ({layer: Ablate/Insert}) to ``model`` inside the ``with`` block (hooks
    always removed after), like baukit's ``Trace`` with an ``edit_output``.

    Each layer's units are found through its layout, decided as dissection decides it: the
    ``layouts`` given ({layer or fnmatch pattern: spec}, or a list of such in priority order;
    what ``--layout`` gives dissection), then torchvision's recognised Swin / ConvNeXt / ViT /
    MaxViT modules, then the output itself (4-D NCHW unless made by a module acting on the last
    axis, 2-D vector). A layer whose layout cannot be decided is refused, never guessed. The
    edit sees [B, C, h, w] maps and its result goes back into the layer's own layout (a
    tokens layout's leading tokens are left as they were)."""
    edits = _checked(edits)
    modules = resolve_layers(model, list(edits))
    # the user's layouts first, then torchvision recognition (None: decided from the output)
    declared = declared_layouts(model, list(edits), *spec_list(layouts))
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            try:
                layout = decide(name, output, declared[name], module)
            except LayerError as e:
                # the Python spelling of dissection's --layout hint
                hint = f" (ndcore.edit: layouts={{{name!r}: SPEC}})" if "--layout" in str(e) else ""
                raise LayerError(f"cannot edit: {e}{hint}") from None
            maps = layout.to_nchw(output)  # a view: unit k is channel k, as in dissection
            edits[name].check(int(maps.shape[1]), name)
            return layout.with_nchw(output, edits[name](maps))  # back into the native layout
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield model
    finally:
        for h in handles:
            h.remove()
