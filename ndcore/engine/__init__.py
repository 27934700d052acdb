"""The dissection engine, in stages (see docs/architecture.md, "Engine stages"):

    options      the run's options: defaults, command-line flags and checks, in one place
    stream       probe batches on a global grid, sharded by rank, resumable by cursor
    forward      model + layer capture -> float32 maps
    accumulator  the add / merge / state_dict protocol of every statistic
    statistics   the statistics, one module each, in one table: tail (thresholds), topk,
                 counts, histogram (best-iou)
    driver       feeds batches to accumulators (knows no files, bars or datasets)
    passes       runs the passes in order, merges the ranks' statistics: forward_pass (pass
                 1), tally_pass (pass 2); layerstats  a pass's statistics of every layer
    keptmaps     the maps pass 1 keeps for pass 2 (mapstore, labelstore: their files)
    checkpointer when to checkpoint and what;  checkpoint  atomic checkpoint files
    rundir       the output directory;  run  the whole run
    series       several models' runs over one pass of the probe data
"""

from typing import Any

from .options import DissectOptions

__all__ = ["Dissection", "DissectOptions", "SeriesDissection"]


def __getattr__(name: str) -> Any:
    # The run (and torch) load on first use: `ndcore --help` builds the flags of `ndcore
    # dissect` from .options alone.
    if name == "Dissection":
        from .run import Dissection

        return Dissection
    if name == "SeriesDissection":
        from .series import SeriesDissection

        return SeriesDissection
    raise AttributeError(f"module 'ndcore.engine' has no attribute {name!r}")
