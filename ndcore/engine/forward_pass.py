"""Pass 1: every layer through the model once.

Its statistics (the table's rows for pass 1): per layer, the top-k images; the exact
top-quantile tail of the layers whose thresholds are not given (and, under best-iou, a sample
of their values); the counts of the layers whose thresholds are given. On the first batch it
decides how pass 2 runs, and from then on it keeps the maps that can still cross their
threshold (:mod:`.keptmaps`). At its end, with every rank's statistics merged, each layer's
threshold is the quantile of its tail.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Dict, List

import torch

from ..data.probe import ProbeBatch
from .keptmaps import KeepMaps
from .layerstats import PassStats
from .statistics import FORWARD_PASS
from .statistics.histogram import ValueSample
from .statistics.tail import TopTail, samples_per_unit

if TYPE_CHECKING:
    from .passes import Passes


class ForwardPass:
    """Pass 1 of a run (see the module); ``todo``: the layers whose thresholds it finds."""

    phase = FORWARD_PASS

    def __init__(self, passes: "Passes", layers: List[str], todo: List[str]) -> None:
        self.passes = passes
        self.layers = layers  # every layer
        self.todo = todo  # the layers whose thresholds this pass finds

    def run(self, stats: PassStats) -> None:
        """This rank's batches not done yet, into ``stats``."""
        p = self.passes
        cursor, grid, kept = p.cursor, p.grid, p.kept
        mine = grid.todo(set(cursor.done))
        consumers: Dict[str, list] = {l: [stats[l]] for l in self.layers}
        per_unit = functools.partial(samples_per_unit, p.context)
        for layer in self.todo:
            consumers[layer].append(KeepMaps(kept, layer, stats[layer], per_unit))
        title = "pass 1/2: forward, thresholds" if self.todo else "single pass: forward, tally"
        batches = p.stream.batches(mine, image=True, labels=bool(p.given))
        with p.stage.capturing(self.layers, on_labels=kept.keep_labels) as run:
            def step(batch: ProbeBatch):
                if cursor.second_pass is None:
                    maps, labelled = run(batch)
                    kept.decide(maps, cursor, grid.size)
                    kept.keep_labels(labelled)  # the store did not exist yet for this batch
                    return maps, labelled
                return run(batch)

            p.drive(title, stats, batches, mine, step, consumers)

    def finish(self, merged: PassStats) -> None:
        """Every layer's threshold (and best-iou candidates), from every rank's statistics."""
        cursor = self.passes.cursor
        thresholds: Dict[str, torch.Tensor] = dict(self.passes.given)
        for layer in self.todo:
            thresholds[layer] = merged.part(layer, TopTail).quantile(
                self.passes.context.options.quantile)
            sample = merged.part(layer, ValueSample)
            if sample is not None:
                cursor.edges[layer] = sample.edges(thresholds[layer].cpu())
        cursor.thresholds = {l: t.to("cpu") for l, t in thresholds.items()}
