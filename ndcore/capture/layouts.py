"""Layouts: which axis of a layer's output holds the units, and how its spatial grid is formed.

Every captured layer is turned into maps [B, C, h, w] here, and only here; unit k is channel k
of the layer in every layout:

    nchw     [B, C, H, W]                    the PyTorch convention (CNNs)
    nhwc     [B, H, W, C]                    channels last (Swin, inside ConvNeXt blocks)
    tokens   [B, N, C], N = K + h*w          K leading non-spatial tokens (class, register,
                                             distillation) then a row-major h x w grid, square
                                             unless declared (``tokens:skip=1:grid=14x14``)
    vector   [B, C] (or [B, C, 1, ..., 1])   fully connected or pooled layers: 1x1 maps, so
                                             each unit's mask covers whole images

A layer's layout comes, first match wins, from ``--layout LAYER=SPEC`` (the user), the model
adapter's ``layouts`` (names or fnmatch patterns), the recognition of torchvision's Swin,
ConvNeXt, ViT and MaxViT modules (:mod:`.recognize`), and last from the output itself: a 2-D
output is a vector, a 4-D output is NCHW unless the module that made it acts on the last axis
(``Linear``, ``LayerNorm``, ``Permute``: its channels may well be last). Anything else is
refused with a one-line error that suggests ``--layout``; nothing is guessed silently.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import LayerError, NdcoreError

KINDS = ("nchw", "nhwc", "tokens", "vector")
LAYOUT_SYNTAX = "nchw, nhwc, tokens[:skip=K][:grid=HxW] or vector"

# A unit's threshold rests on the values above it: q * images * h * w of them. Fewer than this
# and the top-quantile tail is a handful of values: dissection warns.
MIN_TAIL = 20


@dataclass(frozen=True)
class Layout:
    """How a layer's output is laid out; :meth:`to_nchw` gives the [B, C, h, w] maps (a view)."""

    kind: str = "nchw"
    skip: int = 0  # tokens: leading non-spatial tokens
    grid: Optional[Tuple[int, int]] = None  # tokens: (h, w) of the token grid; None = square

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise NdcoreError(f"unknown layout {self.kind!r}: use {LAYOUT_SYNTAX}")
        if self.kind != "tokens" and (self.skip or self.grid):
            raise NdcoreError(f"layout {self.kind}: skip= and grid= belong to 'tokens' only")
        if self.skip < 0 or (self.grid is not None and min(self.grid) < 1):
            raise NdcoreError(f"layout {self}: skip must be >= 0 and grid sizes >= 1")

    def __str__(self) -> str:
        text = self.kind
        if self.skip:
            text += f":skip={self.skip}"
        if self.grid is not None:
            text += f":grid={self.grid[0]}x{self.grid[1]}"
        return text

    @property
    def whole_image(self) -> bool:
        """True for vector layers: every map is 1x1, every mask a whole image."""
        return self.kind == "vector"

    # -- shapes ------------------------------------------------------------------------------

    def fits(self, shape: Sequence[int]) -> Optional[str]:
        """None when an output of ``shape`` fits this layout, else why not (a phrase)."""
        dims = len(shape)
        if self.kind in ("nchw", "nhwc"):
            return None if dims == 4 else f"{self.kind} needs a 4-D output"
        if self.kind == "vector":
            if dims >= 2 and all(s == 1 for s in shape[2:]):
                return None
            return "vector needs [B, C] (or [B, C, 1, 1])"
        if dims != 3:
            return "tokens needs a 3-D [B, N, C] output"
        spatial = shape[1] - self.skip
        if spatial < 1:
            return f"{shape[1]} tokens, not more than skip={self.skip}"
        if self.grid is not None:
            if self.grid[0] * self.grid[1] != spatial:
                return (f"{shape[1]} tokens minus skip={self.skip} is {spatial}, not "
                        f"grid {self.grid[0]}x{self.grid[1]}")
            return None
        side = math.isqrt(spatial)
        if side * side != spatial:
            return (f"{shape[1]} tokens minus skip={self.skip} is {spatial}, not a square grid "
                    "(give grid=HxW)")
        return None

    def units(self, shape: Sequence[int]) -> int:
        return int(shape[1] if self.kind in ("nchw", "vector") else shape[-1])

    def map_size(self, shape: Sequence[int]) -> Tuple[int, int]:
        if self.kind == "nchw":
            return int(shape[2]), int(shape[3])
        if self.kind == "nhwc":
            return int(shape[1]), int(shape[2])
        if self.kind == "vector":
            return 1, 1
        if self.grid is not None:
            return self.grid
        side = math.isqrt(int(shape[1]) - self.skip)
        return side, side

    # -- tensors -----------------------------------------------------------------------------

    def to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """The output as [B, C, h, w]: a view of ``x`` (no copy), leading tokens left out."""
        if self.kind == "nchw":
            return x
        if self.kind == "nhwc":
            return x.permute(0, 3, 1, 2)
        if self.kind == "vector":
            return x.reshape(x.shape[0], x.shape[1], 1, 1)
        h, w = self.map_size(x.shape)
        return x[:, self.skip:, :].unflatten(1, (h, w)).permute(0, 3, 1, 2)

    def with_nchw(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """``x`` (native layout) with its [B, C, h, w] part replaced by ``maps`` (a new tensor;
        leading tokens are kept as they were)."""
        view = self.to_nchw(x)
        if tuple(maps.shape) != tuple(view.shape):
            raise LayerError(f"an edit returned {list(maps.shape)} for maps of shape "
                             f"{list(view.shape)} [B, C, h, w]")
        if self.kind == "nchw" and maps.dtype == x.dtype:
            return maps
        out = x.clone(memory_format=torch.contiguous_format)
        self.to_nchw(out).copy_(maps)
        return out


def parse_layout(text: Union[str, "Layout"]) -> Layout:
    """'nchw', 'nhwc', 'vector', 'tokens', 'tokens:skip=1', 'tokens:skip=1:grid=14x14'."""
    if isinstance(text, Layout):
        return text
    parts = [p.strip() for p in str(text).strip().lower().split(":")]
    kind, options = parts[0], parts[1:]
    if kind not in KINDS:
        raise NdcoreError(f"layout {text!r}: use {LAYOUT_SYNTAX}")
    skip, grid = 0, None
    for option in options:
        key, sep, value = option.partition("=")
        try:
            if key == "skip" and sep:
                skip = int(value)
            elif key == "grid" and sep:
                h, _, w = value.partition("x")
                grid = (int(h), int(w or h))
            else:
                raise ValueError
        except ValueError:
            raise NdcoreError(f"layout {text!r}: bad option {option!r}; use "
                              f"{LAYOUT_SYNTAX}") from None
    return Layout(kind, skip, grid)


def parse_layout_options(values: Optional[Sequence[str]]) -> Dict[str, str]:
    """``--layout LAYER=SPEC`` values (repeatable) -> {layer: normalised spec}."""
    out: Dict[str, str] = {}
    for value in values or []:
        layer, sep, spec = value.partition("=")
        if not sep or not layer.strip() or not spec.strip():
            raise NdcoreError(f"--layout {value!r}: expected LAYER=LAYOUT, LAYOUT one of "
                              f"{LAYOUT_SYNTAX}")
        try:
            out[layer.strip()] = str(parse_layout(spec))
        except NdcoreError as e:
            raise NdcoreError(f"--layout {value!r}: {e}") from None
    return out


@dataclass(frozen=True)
class Unsupported:
    """A declaration that a module's output cannot be dissected, and why (one phrase)."""

    reason: str


Declaration = Union[Layout, Unsupported]


def lookup(declared: Mapping[str, Union[str, Declaration]], name: str) -> Optional[Declaration]:
    """The declaration of layer ``name``: an exact key first, then the first fnmatch pattern."""
    if name in declared:
        value = declared[name]
    else:
        value = next((v for k, v in declared.items()
                      if any(c in k for c in "*?[") and fnmatch.fnmatchcase(name, k)), None)
    if value is None or isinstance(value, (Layout, Unsupported)):
        return value
    return parse_layout(value)


# -- deciding the layout of an output ----------------------------------------------------------


def _last_axis_module(module: Optional[nn.Module]) -> Optional[str]:
    """A module type that acts on the last axis (so a 4-D output of it may be channels last)."""
    if module is None:
        return None
    if type(module) is nn.Linear:
        return "nn.Linear acts on the last axis"
    if type(module) is nn.LayerNorm and len(module.normalized_shape) == 1:
        return "nn.LayerNorm normalises the last axis"
    if type(module).__name__ == "Permute":
        return "it permutes its input's axes"
    return None


def _tokens_hint(name: str, shape: Sequence[int]) -> str:
    general = (f"--layout {name}=tokens:skip=K[:grid=HxW] if it is [B, tokens, channels] with "
               "K leading non-spatial tokens")
    n = int(shape[1])
    for skip in range(0, 9):
        side = math.isqrt(max(n - skip, 0))
        if n - skip > 0 and side * side == n - skip:
            spec = f"tokens:skip={skip}" if skip else "tokens"
            split = f"{skip} + {side}x{side}" if skip else f"{side}x{side}"
            return f"{general} (e.g. {spec}: {n} = {split})"
    return general


def decide(name: str, output, declared: Optional[Declaration] = None,
           module: Optional[nn.Module] = None, batch: Optional[int] = None) -> Layout:
    """The layout of layer ``name``'s output, or a :class:`LayerError` (one line) saying why
    it cannot be dissected and what to do."""
    if isinstance(declared, Unsupported):
        raise LayerError(f"layer {name!r} cannot be dissected: {declared.reason}")
    if not isinstance(output, torch.Tensor):
        raise LayerError(f"layer {name!r} outputs a {type(output).__name__}, not a tensor; "
                         "choose a module that returns one tensor")
    shape = list(output.shape)
    if output.dim() < 2:
        raise LayerError(f"layer {name!r} outputs {shape}: no unit axis to dissect")
    if batch is not None and shape[0] != batch:
        raise LayerError(f"layer {name!r} outputs {shape}, whose first axis is not the batch "
                         f"of {batch} images; it cannot be dissected")
    if declared is not None:
        problem = declared.fits(shape)
        if problem:
            raise LayerError(f"layer {name!r} outputs {shape}, which does not fit layout "
                             f"{declared}: {problem}; fix it with --layout {name}=...")
        return declared
    if output.dim() == 2:
        return Layout("vector")
    if output.dim() == 4:
        why = _last_axis_module(module)
        if why:
            raise LayerError(
                f"layer {name!r} ({type(module).__name__}) outputs {shape} and {why}, so its "
                f"channels may be last; say --layout {name}=nhwc (channels last) or "
                f"--layout {name}=nchw")
        return Layout("nchw")
    if output.dim() == 3:
        raise LayerError(f"layer {name!r} outputs {shape}, whose layout is not declared; say "
                         f"{_tokens_hint(name, shape)}")
    raise LayerError(f"layer {name!r} outputs {shape} ({output.dim()}-D); say --layout "
                     f"{name}=nchw|nhwc|tokens|vector if one of them fits")


# -- what a layer's maps allow ------------------------------------------------------------------


def map_notes(layer: str, layout: Layout, size: Tuple[int, int], images: Optional[int] = None,
              quantile: Optional[float] = None) -> List[str]:
    """Warnings about a layer's maps: 1x1 maps (whole-image masks) and, given the number of
    probe images and the run's top quantile, thresholds that rest on a handful of values."""
    h, w = size
    notes = []
    if h * w == 1:
        what = "is a vector layer" if layout.whole_image else "has 1x1 maps"
        notes.append(f"layer {layer!r} {what}: each unit's mask is the whole image (dissected "
                     "as 1x1 maps), so it can only match image-level concepts (scene, texture) "
                     "or objects that fill the image")
    if images is not None and quantile is not None:
        tail = quantile * images * h * w
        if tail < MIN_TAIL:
            need = math.ceil(MIN_TAIL / (quantile * h * w))
            notes.append(
                f"layer {layer!r}: {images} images x {h}x{w} = {images * h * w} values per unit, "
                f"so its top-{quantile:g} threshold rests on about {tail:.1f} of them and its "
                f"IoUs are noise; use at least {need} images")
    return notes


def short_note(layout: Layout, size: Tuple[int, int], quantile: float) -> str:
    """A few words for ``ndcore layers``: flags 1x1 maps and maps too small to threshold at
    top quantile ``quantile``."""
    h, w = size
    need = math.ceil(MIN_TAIL / (quantile * h * w))
    if h * w == 1:
        return "1x1: whole-image masks"
    if need > 200:
        return f"few pixels: needs >= {need} images"
    return ""


def check_layout_keys(layouts: Mapping[str, str], layers: Sequence[str]) -> None:
    """--layout names must be layers being dissected (or patterns matching some)."""
    for key, spec in layouts.items():
        parse_layout(spec)
        if any(c in key for c in "*?["):
            if not any(fnmatch.fnmatchcase(l, key) for l in layers):
                raise NdcoreError(f"--layout {key}={spec}: the pattern matches none of --layers")
        elif key not in layers:
            raise NdcoreError(f"--layout names layer {key!r}, which is not in --layers")
