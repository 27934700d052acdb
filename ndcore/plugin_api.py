"""Everything a plugin needs, importable from one place (the reference is docs/plugins.md).

    from ndcore.plugin_api import hookimpl, ModelAdapter, ProbeItem, ProbeSource, ...

Names here are the plugin contract: they keep their meaning across ndcore's minor versions
(``PLUGIN_API_VERSION`` changes when they do not).
"""

from __future__ import annotations

from .data.probe import ProbeItem, ProbeSource, ProbeSourceInfo, remove_repeated_labels
from .data.validate import check_items
from .data.vocabulary import Vocabulary
from .errors import DatasetError, NdcoreError, PluginError
from .gan.segmenters import Segmentation, Segmenter, single_category_vocabulary
from .hookspecs import hookimpl
from .models import (NORMALIZE_PRESETS, ModelAdapter, ModelRequest, Preprocess, apply_weights,
                     load_state_dict_file, sha256_of)
from .plugins import DatasetRequest

PLUGIN_API_VERSION = 1

__all__ = [
    "PLUGIN_API_VERSION",
    # hooks
    "hookimpl",
    # models
    "ModelRequest", "ModelAdapter", "Preprocess", "NORMALIZE_PRESETS", "apply_weights",
    "load_state_dict_file", "sha256_of",
    # datasets (probe sources)
    "DatasetRequest", "ProbeSource", "ProbeItem", "ProbeSourceInfo", "Vocabulary",
    "remove_repeated_labels", "check_items",
    # segmenters (GAN dissection)
    "Segmenter", "Segmentation", "single_category_vocabulary",
    # errors
    "NdcoreError", "DatasetError", "PluginError",
]
