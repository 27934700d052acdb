"""The per-layer statistics of the passes, one module each, found through one table.

Each module here defines an accumulator (the protocol of :mod:`ndcore.engine.accumulator`) and
registers its row in :data:`~.table.STATISTICS` (:class:`~.table.Statistic`: the pass that
feeds it, when it applies to a layer, how a saved state is restored, where its result goes):

    tail       TopTail       pass 1   the exact top-quantile tail of each unit: its threshold
    topk       TopKImages    pass 1   the top images of each unit, with their maps
    counts     TallyCounts   pass 1/2 the IoU counts, once a layer's thresholds are known
    histogram  ValueSample   pass 1   best-iou: a sample of each unit's values (candidates)
               IoUHistogram  pass 2   best-iou: counts at every candidate threshold

Importing this package imports every module in it, so a new statistic is one new module here
(and its test); docs/architecture.md, "Adding a statistic to the engine", shows one.
"""

import importlib
import pkgutil

from .table import (FORWARD_PASS, STATISTICS, TALLY_PASS, RunContext, Statistic, fed_by,
                    register)

for _module in pkgutil.iter_modules(__path__):  # sorted by name: a stable table order
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FORWARD_PASS", "STATISTICS", "TALLY_PASS", "RunContext", "Statistic", "fed_by",
           "register"]
