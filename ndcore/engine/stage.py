"""The model stage of the passes: what turns a streamed batch into maps and a labelled batch.

    step(batch) -> (maps {layer: [B, U, h, w] float32}, labelled batch)

Two kinds: a dataset's images go through the model, and their labels came with the stream
(the labeller stage ran in the loader workers); a generator's latents go through the
generator, and its labels come from segmenting the generated images (ndcore.gan.dissection.stage).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from ..capture.rotation import (haar_rotation, power_from_blocks, rotate_maps,
                                schur_blocks)
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


class RotatingStage(Stage):
    """A stage that also makes derived layers: a layer's units rotated (docs/method.md
    section 13), from the maps of the same forward pass.

    ``derived`` is {derived layer: (source layer, alpha)}, ``seed`` the rotation's seed.
    Asked for layers among which are derived ones, the inner stage captures their sources;
    each derived layer's maps are ``Q^alpha @ maps`` over the channels of its source's maps
    (float32; Q drawn for the source's number of units on the first batch), or for alpha 0
    the source's maps themselves (no arithmetic). The passes, accumulators, checkpoints and
    processes treat a derived layer as any layer.
    """

    def __init__(self, inner: Stage, derived: Dict[str, Tuple[str, float]], seed: int) -> None:
        self.inner = inner
        self.derived = dict(derived)
        self.seed = seed
        self.labels_from_stream = inner.labels_from_stream
        self.kind = inner.kind
        self.makes_images = inner.makes_images
        self._on_device: Dict[Tuple[str, torch.device], torch.Tensor] = {}

    def _rotation(self, layer: str, maps: torch.Tensor) -> Optional[torch.Tensor]:
        alpha = self.derived[layer][1]
        if alpha == 0:
            return None
        key = (layer, maps.device)
        if key not in self._on_device:
            matrix = rotation_matrix(maps.shape[1], alpha, self.seed)
            self._on_device[key] = torch.as_tensor(matrix, dtype=torch.float32).to(maps.device)
        return self._on_device[key]

    @contextlib.contextmanager
    def capturing(self, layers: Sequence[str],
                  on_labels: Optional[Callable[[ProbeBatch], None]] = None) -> Iterator[Step]:
        layers = list(layers)
        sources = list(dict.fromkeys(self.derived[l][0] if l in self.derived else l
                                     for l in layers))
        with self.inner.capturing(sources, on_labels=on_labels) as run:
            def step(batch: ProbeBatch):
                maps, labelled = run(batch)
                out = {}
                for layer in layers:
                    if layer in self.derived:
                        source = maps[self.derived[layer][0]]
                        out[layer] = rotate_maps(source, self._rotation(layer, source))
                    else:
                        out[layer] = maps[layer]
                return out, labelled

            yield step


_ROTATIONS: Dict[Tuple[int, int], object] = {}  # (units, seed) -> Q's Schur form


def rotation_matrix(units: int, alpha: float, seed: int) -> np.ndarray:
    """``Q^alpha`` (float64 [units, units]) of the Haar rotation Q drawn with ``seed``; the
    Schur form of Q is computed once per (units, seed) in a process."""
    if (units, seed) not in _ROTATIONS:
        if len(_ROTATIONS) >= 4:
            _ROTATIONS.clear()
        _ROTATIONS[(units, seed)] = schur_blocks(haar_rotation(units, seed))
    return power_from_blocks(units, _ROTATIONS[(units, seed)], alpha)
