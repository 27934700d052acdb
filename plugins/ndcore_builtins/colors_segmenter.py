"""``colors``: every pixel of a generated image named by one of Broden's 11 colour names."""

from ndcore.plugin_api import ColorSegmenter, PluginError, hookimpl


def build(target: str, request=None) -> ColorSegmenter:
    if target:
        raise PluginError(f"segmenter colors takes no target, got colors:{target}")
    return ColorSegmenter()


@hookimpl
def ndcore_register_segmenters(register):
    register("colors", build, description="Broden's 11 colour names per pixel (no weights)")
