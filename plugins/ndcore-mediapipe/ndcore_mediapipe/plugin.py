"""The hook: registers the ``face-parts`` segmenter (``--segmenter face-parts``)."""

from ndcore.plugin_api import PluginError, hookimpl


def build(target: str, request=None):
    if target:
        raise PluginError(f"segmenter face-parts takes no target, got face-parts:{target} (the "
                          "worker's Python comes from NDCORE_MEDIAPIPE_PYTHON or .venv-mediapipe)")
    from .segmenter import FacePartsSegmenter

    return FacePartsSegmenter()


@hookimpl
def ndcore_register_segmenters(register):
    register("face-parts", build,
             description="face parts from mediapipe's face mesh, in a worker (ndcore-mediapipe)")
