"""The kinds of adapter a plugin registers: for each, the hook that registers it and the check of
what its factories return; and what a dataset factory is asked for (a model factory gets a
:class:`ndcore.models.ModelRequest`).

Adding a kind of adapter is one hookspec in ``ndcore/hookspecs.py`` plus one entry in
:data:`ADAPTER_KINDS`: the plugin manager, ``ndcore plugins`` and the lookup of ``NAME:TARGET``
specs take the rest from the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..data.segmenters import check_segmenter
from ..data.validate import check_probe_source
from ..models import check_model_adapter


@dataclass(frozen=True)
class AdapterKind:
    hook: str  # the hook whose implementations register adapters of this kind
    # What a factory returned -> None, or the problem ("returned Conv2d, not a ...").
    check: Callable[[Any], Optional[str]]


# The kind names the adapter in messages ("model adapter 'tinycnn'") and in `ndcore plugins`.
ADAPTER_KINDS: Dict[str, AdapterKind] = {
    "model": AdapterKind("ndcore_register_models", check_model_adapter),
    "dataset": AdapterKind("ndcore_register_datasets", check_probe_source),
    "segmenter": AdapterKind("ndcore_register_segmenters", check_segmenter),
}


@dataclass
class DatasetRequest:
    """What a user asked of a dataset, handed to a dataset factory with the spec's target.

    ``categories``, ``max_images`` and ``resize`` are hints: the engine applies all three to
    every source itself (``ndcore.data.view``). A source may use them to skip work (not reading
    the planes of categories that are not wanted); it never has to.
    """

    categories: Optional[Sequence[str]] = None
    max_images: Optional[int] = None
    resize: Optional[Tuple[int, int]] = None
    options: Dict[str, str] = field(default_factory=dict)
