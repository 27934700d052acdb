"""Capturing (and optionally editing) named layers of a model, as [B, C, h, w] maps.

- :mod:`.hooks`: :class:`LayerCapture` (forward hooks, early stop, edits), layer names.
- :mod:`.layouts`: :class:`Layout` (nchw, nhwc, tokens, vector) and the rules that decide a
  layer's layout; the one place where outputs become [B, C, h, w].
- :mod:`.recognize`: layouts of torchvision's Swin, ConvNeXt, ViT and MaxViT modules.
- :mod:`.describe`: every module's output, layout and units (``ndcore layers``).
"""

from .describe import LayerInfo, describe_layers
from .hooks import (Edit, LayerCapture, declared_layouts, hookable_layers, layer_shapes,
                    resolve_layers)
from .layouts import (KINDS, LAYOUT_SYNTAX, Layout, Unsupported, check_layout_keys, decide,
                      map_notes, parse_layout, parse_layout_options)
from .recognize import recognize

__all__ = [
    "Edit", "KINDS", "LAYOUT_SYNTAX", "LayerCapture", "LayerInfo", "Layout", "Unsupported",
    "check_layout_keys", "decide", "declared_layouts", "describe_layers", "hookable_layers",
    "layer_shapes", "map_notes", "parse_layout", "parse_layout_options", "recognize",
    "resolve_layers",
]
