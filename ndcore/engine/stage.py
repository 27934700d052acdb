"""The model stage of the passes: what turns a streamed batch into maps and a labelled batch.

    step(batch) -> (maps {layer: [B, U, h, w] float32}, labelled batch)

Two kinds: a dataset's images go through the model, and their labels came with the stream
(the labeller stage ran in the loader workers); a generator's latents go through the
generator, and its labels come from segmenting the generated images (ndcore.gan.dissection.stage).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch

from ..data.probe import ProbeBatch
from .forward import ModelRunner

Maps = Dict[str, torch.Tensor]
Step = Callable[[ProbeBatch], Tuple[Maps, ProbeBatch]]


class Stage:
    """Base of the model stages."""

    #: pass 2 can read a batch's labels from the stream (datasets) or needs a label store
    labels_from_stream: bool = True
    #: what config.json says about the probe images' origin
    kind: str = "dataset"
    #: the stage makes the images (a generator): they exist nowhere else, so the top-k
    #: images are kept with the run's statistics for the report
    makes_images: bool = False

    def capturing(self, layers: Sequence[str],
                  on_labels: Optional[Callable[[ProbeBatch], None]] = None):
        """Context manager yielding ``step``; ``on_labels`` sees every labelled batch that a
        stage made itself (generators), so that pass 1 can keep them for pass 2."""
        raise NotImplementedError


class DatasetStage(Stage):
    """Images through the model; labels as the stream loaded them."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner

    @contextlib.contextmanager
    def capturing(self, layers: Sequence[str],
                  on_labels: Optional[Callable[[ProbeBatch], None]] = None) -> Iterator[Step]:
        with self.runner.capturing(layers) as run:
            yield lambda batch: (run(batch), batch)
