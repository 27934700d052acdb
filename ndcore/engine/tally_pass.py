"""Pass 2: the counts of the layers whose thresholds pass 1 found.

Its statistics are the table's rows for pass 2 (the counts; under best-iou, the IoU
histograms). A batch comes from the maps pass 1 kept where they serve it exactly, else from
the model again.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, List

from ..data.probe import ProbeBatch
from .layerstats import PassStats
from .statistics import TALLY_PASS

if TYPE_CHECKING:
    from .passes import Passes


class TallyPass:
    """Pass 2 of a run (see the module), over ``layers``: those whose thresholds pass 1 found."""

    phase = TALLY_PASS

    def __init__(self, passes: "Passes", layers: List[str]) -> None:
        self.passes = passes
        self.layers = layers  # the layers without given thresholds

    def run(self, stats: PassStats) -> None:
        """This rank's batches not done yet, into ``stats`` (nothing when no layer needs it)."""
        if not self.layers:
            return
        p = self.passes
        cursor, grid = p.cursor, p.grid
        mine = grid.todo(set(cursor.done))
        from_stream = p.stage.labels_from_stream
        cached, rest = p.kept.split(mine, grid.indices, cursor.thresholds)
        cached_set = set(cached)
        batches = itertools.chain(p.stream.batches(cached, image=False, labels=from_stream),
                                  p.stream.batches(rest, image=True))
        read_kept = p.kept.reader(cursor)
        title = "pass 2/2: tally (kept maps)" if cached else "pass 2/2: forward, tally"
        with p.stage.capturing(self.layers) as run:
            def step(batch: ProbeBatch):
                if grid.batch_of(int(batch.indices[0])) not in cached_set:
                    return run(batch)
                return read_kept(batch)

            p.drive(title, stats, batches, mine, step, {l: [stats[l]] for l in self.layers})

    def finish(self, merged: PassStats) -> None:
        """Nothing: no later pass needs anything from this one."""
