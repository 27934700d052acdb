"""ndcore-mediapipe: the ``face-parts`` segmenter (mediapipe 0.10.21's face mesh and selfie
segmentation, in a worker process in its own environment) for dissecting face generators."""

__version__ = "0.1.0"


def __getattr__(name):  # import lazily: `ndcore plugins` loads the hook module only
    if name == "FacePartsSegmenter":
        from .segmenter import FacePartsSegmenter

        return FacePartsSegmenter
    raise AttributeError(f"module 'ndcore_mediapipe' has no attribute {name!r}")
