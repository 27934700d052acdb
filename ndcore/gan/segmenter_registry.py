"""Finding a segmenter by its spec ``NAME[:TARGET]`` among the registered ones."""

from __future__ import annotations

from .segmenters import Segmenter


def build_segmenter(spec: str) -> Segmenter:
    """The segmenter a spec names (registered through ``ndcore_register_segmenters``); the
    plugin manager checks what the factory returns and names the plugin on errors."""
    from ..plugins import get_plugin_manager

    return get_plugin_manager().build_segmenter(spec)
