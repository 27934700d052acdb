"""Everything a plugin needs, importable from one place (the reference is docs/plugins.md).

    from ndcore.plugin_api import hookimpl, ModelAdapter, ProbeItem, ProbeSource, ...

Plugins import ndcore from this module only. The names in ``__all__`` are the plugin contract:
they keep their meaning across ndcore's minor versions (``PLUGIN_API_VERSION`` changes when they
do not). The last section, ndcore's own components, is there for the built-in adapters
(``plugins/ndcore_builtins``): it is not part of the contract and follows ndcore's own version.
"""

from __future__ import annotations

from .data.probe import ProbeItem, ProbeSource, ProbeSourceInfo, remove_repeated_labels
from .data.segmenters import Segmentation, Segmenter, single_category_vocabulary
from .data.source_check import check_items
from .data.vocabulary import Vocabulary
from .errors import TRACEBACK_HINT, DatasetError, NdcoreError, PluginError, one_line, suggest
from .hookspecs import hookimpl
from .models import (NORMALIZE_PRESETS, ModelAdapter, ModelRequest, Preprocess, apply_weights,
                     load_state_dict_file, sha256_of)
from .plugins import DatasetRequest

# ndcore's own components, for the built-in adapters (not the contract: see above)
from .data.broden import BrodenDataset  # noqa: F401
from .data.probesets.images import ImageFolderSource  # noqa: F401
from .data.segmenters import ColorSegmenter  # noqa: F401
from .data.synthetic import ensure_synthetic  # noqa: F401
from .demo.model import DEMO_MEAN, DEMO_STD, build_demo_model  # noqa: F401
from .demo.model import WEIGHTS_PATH as DEMO_WEIGHTS  # noqa: F401
from .specs import resolve_segmenter  # noqa: F401

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
    # errors, and one-line messages about them
    "NdcoreError", "DatasetError", "PluginError", "one_line", "suggest", "TRACEBACK_HINT",
]
