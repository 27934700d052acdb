"""A run's results: IoUs from saved counts (``iou``), units labelled under any union, cut-off and
category set and the result files (``result``), the image list (``images``) and the thumbnails
of file-less top images (``thumbnails``)."""

from ..conventions import DEFAULT_CUTOFF, UNIONS
from .iou import iou_curves, iou_matrix, label_counts
from .result import DissectionResult, LayerResult, UnitResult, layer_dir, save_layer_counts

__all__ = ["DEFAULT_CUTOFF", "UNIONS", "iou_curves", "iou_matrix", "label_counts",
           "DissectionResult", "LayerResult", "UnitResult", "layer_dir", "save_layer_counts"]
