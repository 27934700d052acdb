"""Checking a probe source as a run reads it, for a plugin's own tests (plugin_api.check_items)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..errors import DatasetError
from .validate import ItemValidator, check_probe_source
from .view import SourceView


def check_items(source: Any, indices: Optional[Sequence[int]] = None,
                max_items: Optional[int] = 100) -> None:
    """Check a probe source as a run would, for a plugin's own tests.

    Reads ``indices`` (default: the first ``max_items``, None = all) through the same checks
    the engine applies and raises :class:`~ndcore.errors.DatasetError` with the first problem,
    in the line a run would print.
    """
    problem = check_probe_source(source)
    if problem:
        raise DatasetError(f"probe source {type(source).__name__}: {problem}")
    view = SourceView(source)
    check = ItemValidator(view.vocabulary, view.origin)
    if indices is None:
        indices = range(len(view) if max_items is None else min(len(view), max_items))
    for index in indices:
        for image, labels in ((True, True), (False, True), (True, False)):
            item = view.read(int(index), image=image, labels=labels)
            error = item.error or check(item)
            if error:
                raise DatasetError(error)
