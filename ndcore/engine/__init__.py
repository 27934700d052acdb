"""The dissection engine, in stages (see ARCHITECTURE.md, "Stages"):

    stream       probe batches on a global grid, sharded by rank, resumable by cursor
    forward      model + layer capture -> float32 maps
    accumulator  the add / merge / state_dict protocol: tail (thresholds), topk, counts
    driver       feeds batches to accumulators (knows no files, bars or datasets)
    passes       pass 1 and pass 2, checkpoints, distributed merging
    mapstore     kept maps between the passes, keyed by probe index
    checkpoint   atomic checkpoint files;  rundir  the output directory;  run  the whole run
"""

from .options import DissectOptions
from .run import Dissection

__all__ = ["Dissection", "DissectOptions"]
