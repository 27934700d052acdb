"""Layouts of torchvision's transformer-era models, recognised from the modules themselves.

Any instance of torchvision's ``SwinTransformer`` (v1 and v2), ``ConvNeXt``,
``VisionTransformer`` or ``MaxVit`` inside a model gets its submodules' layouts declared,
whoever built it (``torchvision:`` or a ``python:`` factory that wraps one). The rules follow
torchvision's code:

- Swin: ``features`` and ``norm`` work channels last ([B, H, W, C]) except the patch-embedding
  conv; ``permute`` and ``avgpool`` give NCHW; ``flatten`` and ``head`` vectors. The modules
  inside window attention see windows or position tables, not the image grid: refused.
- ConvNeXt: NCHW, except inside each block's ``block`` sequence, between its two ``Permute``
  modules (channels-last LayerNorm / Linear / GELU / Linear). The classifier's ``Flatten``
  and ``Linear`` give vectors (2-D outputs).
- ViT: ``conv_proj`` is NCHW; everything under ``encoder`` is tokens with one class token and
  an (image_size / patch_size) square grid; ``self_attention`` returns a tuple and its
  ``out_proj`` never runs as a module: refused. ``heads`` are vectors.
- MaxViT: NCHW, except inside each window / grid attention layer, whose inner modules see
  partitioned windows [B, windows, tokens per window, C]: refused (the attention layer itself
  and its ``departition_op`` give NCHW). The classifier after its pooling gives vectors.

Modules that these rules leave out are decided from their outputs (4-D: NCHW, 2-D: vector).
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Tuple, Type

from torch import nn

from .layouts import Declaration, Layout, Unsupported

NCHW, NHWC, VECTOR = Layout("nchw"), Layout("nhwc"), Layout("vector")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _below(module: nn.Module, prefix: str, include_self: bool = True):
    """(full dotted name, module) for ``module`` and everything under it."""
    for name, sub in module.named_modules():
        if name or include_self:
            yield _join(prefix, name), sub


def _permutes(prefix: str, seq: nn.Module, state: Layout, out: Dict[str, Declaration]) -> None:
    """Declare a Sequential's children by following the Permute modules in it."""
    for name, child in seq.named_children():
        dims = list(getattr(child, "dims", []) or [])
        if type(child).__name__ == "Permute":
            if dims == [0, 2, 3, 1]:
                state = NHWC
            elif dims == [0, 3, 1, 2]:
                state = NCHW
        for full, _ in _below(child, _join(prefix, name)):
            out[full] = state


def _swin(prefix: str, model: nn.Module, out: Dict[str, Declaration]) -> None:
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

    for part in ("features", "norm"):
        sub = getattr(model, part, None)
        if sub is None:
            continue
        for full, module in _below(sub, _join(prefix, part)):
            out.setdefault(full, NCHW if isinstance(module, nn.Conv2d) else NHWC)
            if isinstance(module, (ShiftedWindowAttention, ShiftedWindowAttentionV2)):
                for inner, _ in _below(module, full, include_self=False):
                    out[inner] = Unsupported(
                        f"it is inside Swin's window attention ({full}), which works on windows "
                        f"and position tables; choose {full} or its block")
    for part, layout in (("permute", NCHW), ("avgpool", NCHW), ("flatten", VECTOR),
                         ("head", VECTOR)):
        if hasattr(model, part):
            out[_join(prefix, part)] = layout


def _convnext(prefix: str, model: nn.Module, out: Dict[str, Declaration]) -> None:
    from torchvision.models.convnext import CNBlock

    # NCHW outside the blocks' channels-last stretch: the output rule (4-D: NCHW, 2-D: vector)
    # decides those; only the stretch between the Permutes needs declaring.
    for full, module in _below(model, prefix, include_self=False):
        if isinstance(module, CNBlock) and isinstance(getattr(module, "block", None),
                                                      nn.Sequential):
            _permutes(_join(full, "block"), module.block, NCHW, out)


def _vit(prefix: str, model: nn.Module, out: Dict[str, Declaration]) -> None:
    image, patch = int(model.image_size), int(model.patch_size)
    side = image // patch
    skip = 1 if getattr(model, "class_token", None) is not None else 0
    tokens = Layout("tokens", skip=skip, grid=(side, side))
    conv = getattr(model, "conv_proj", None)
    if conv is not None:
        for full, _ in _below(conv, _join(prefix, "conv_proj")):
            out[full] = NCHW
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        for full, module in _below(encoder, _join(prefix, "encoder")):
            if isinstance(module, nn.MultiheadAttention):
                out[full] = Unsupported(
                    "nn.MultiheadAttention returns a tuple (output, attention weights); choose "
                    "its encoder layer, ln_2 or mlp")
                for inner, _ in _below(module, full, include_self=False):
                    out[inner] = Unsupported(
                        f"{full} uses these weights without calling the module, so it never "
                        "runs; choose the encoder layer or its mlp")
            else:
                out.setdefault(full, tokens)
    heads = getattr(model, "heads", None)
    if heads is not None:
        for full, _ in _below(heads, _join(prefix, "heads")):
            out[full] = VECTOR


def _maxvit(prefix: str, model: nn.Module, out: Dict[str, Declaration]) -> None:
    from torchvision.models.maxvit import PartitionAttentionLayer

    # Outside the partition attention layers everything is NCHW or (the classifier after its
    # pooling) a vector, which the output rule decides.
    for full, module in _below(model, prefix, include_self=False):
        if isinstance(module, PartitionAttentionLayer):
            out[full] = NCHW
            for name, child in module.named_children():
                for inner, _ in _below(child, _join(full, name)):
                    out[inner] = NCHW if name == "departition_op" else Unsupported(
                        f"it sees MaxViT's partitioned windows [B, windows, tokens, C], not the "
                        f"image grid; choose {full} (its output is NCHW)")


def _rules() -> List[Tuple[Type[nn.Module], Callable]]:
    # A model built from torchvision's classes has imported torchvision already; importing it
    # only to find that a model uses none of them would cost seconds (e.g. for a GAN).
    if "torchvision" not in sys.modules:
        return []
    try:
        from torchvision.models.convnext import ConvNeXt
        from torchvision.models.maxvit import MaxVit
        from torchvision.models.swin_transformer import SwinTransformer
        from torchvision.models.vision_transformer import VisionTransformer
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return []
    return [(SwinTransformer, _swin), (ConvNeXt, _convnext), (VisionTransformer, _vit),
            (MaxVit, _maxvit)]


def recognize(model: nn.Module) -> Dict[str, Declaration]:
    """{dotted module name: declaration} for the torchvision models found inside ``model``
    (``model`` itself included); modules outside them are not in the result."""
    rules = _rules()
    out: Dict[str, Declaration] = {}
    for prefix, module in model.named_modules():
        for cls, rule in rules:
            if isinstance(module, cls):
                found: Dict[str, Declaration] = {}
                rule(prefix, module, found)
                if prefix:  # the model's own output: its head (a vector) or last stage
                    found.pop(prefix, None)
                out.update(found)
    return out


def recognized_family(model: nn.Module) -> List[str]:
    """Names of the torchvision classes recognised inside ``model`` (for messages)."""
    return sorted({cls.__name__ for _, m in model.named_modules() for cls, _ in _rules()
                   if isinstance(m, cls)})
