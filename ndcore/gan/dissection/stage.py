"""The model stage of generator dissection: latents -> generator (units captured) -> images ->
segmenter -> label-space labels.

The probe stream of a generator yields batches of probe indices only; sample i's latent is a
function of (seed, i) (:mod:`ndcore.gan.latents`), so any rank, batch or resumed run makes the
same image. The generated images are segmented in the same step, and the labelled batch goes on
to the accumulators like a dataset's.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ...capture import LayerCapture
from ...data.labelspace import LabelSpace
from ...data.probe import ProbeBatch
from ...engine.forward import finite_maps
from ...engine.stage import Stage, Step
from ...engine.stream import BatchGrid
from ...errors import NdcoreError
from ...models import ModelAdapter
from ..generator import GeneratorInfo, to_images
from ..latents import latents
from ...data.segmenters import Segmenter


def empty_batch(indices: Sequence[int]) -> ProbeBatch:
    n = len(indices)
    return ProbeBatch(torch.tensor(list(indices), dtype=torch.int64),
                      torch.zeros((n, 0, 0, 0), dtype=torch.uint8),
                      torch.zeros((n, 0, 1, 1), dtype=torch.int32),
                      torch.zeros((n, 0), dtype=torch.int64),
                      torch.zeros((n, 0), dtype=torch.bool))


class GeneratorStream:
    """Batches of probe indices on the grid (the latents are made in the stage)."""

    def __init__(self, grid: BatchGrid) -> None:
        self.grid = grid

    def batches(self, batch_ids: Sequence[int], image: bool = True,
                labels: bool = True) -> Iterator[Tuple[int, ProbeBatch]]:
        for b in batch_ids:
            yield b, empty_batch(self.grid.indices(b))


class Labeller:
    """Segmenter output -> a labelled ProbeBatch (label-space ids), checked on the way."""

    def __init__(self, segmenter: Segmenter, labelspace: LabelSpace, spec: str) -> None:
        self.segmenter, self.labelspace, self.spec = segmenter, labelspace, spec

    def __call__(self, indices: torch.Tensor, images: torch.Tensor, device) -> ProbeBatch:
        seg = self.segmenter.segment(images)
        labels = seg.labels
        n = images.shape[0]
        if not isinstance(labels, torch.Tensor) or labels.dim() != 4 or labels.shape[0] != n \
                or labels.dtype.is_floating_point:
            what = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise NdcoreError(f"segmenter {self.spec}: returned labels {what}; expected integer "
                              f"[{n}, P, h, w]")
        planes = labels.to("cpu", torch.int64).numpy()
        vocab = self.labelspace.vocabulary
        bad = (planes < 0) | (planes >= vocab.num_labels)
        if bad.any():
            b = int(np.nonzero(bad.reshape(n, -1).any(1))[0][0])
            values = sorted(set(planes[b][bad[b]].tolist()))[:5]
            raise NdcoreError(
                f"segmenter {self.spec}: label(s) {values} on sample {int(indices[b])} are not "
                f"in its vocabulary (1..{vocab.num_labels - 1})")
        encoded = np.stack([self.labelspace.encode_planes(p, seg.plane_categories)
                            for p in planes]) if planes.shape[1] else planes.astype(np.int32)
        valid = torch.ones(n, dtype=torch.bool) if seg.valid is None else \
            seg.valid.to("cpu", torch.bool).reshape(n)
        encoded[~valid.numpy()] = 0  # a sample the segmenter could not label has no labels
        annotated = valid[:, None].expand(n, vocab.num_categories).clone()
        return ProbeBatch(indices.to("cpu"), images.to("cpu"), torch.from_numpy(encoded),
                          torch.zeros((n, 0), dtype=torch.int64), annotated).to(device)


class GeneratorStage(Stage):
    """Generates each batch's samples, captures the layers, segments the images."""

    labels_from_stream = False
    kind = "generator"
    makes_images = True

    def __init__(self, adapter: ModelAdapter, info: GeneratorInfo, labeller: Labeller,
                 seed: int, device: torch.device,
                 layouts: Optional[Mapping[str, str]] = None) -> None:
        self.adapter, self.info, self.labeller = adapter, info, labeller
        self.seed, self.device = seed, torch.device(device)
        # the user's --layout first, then the adapter's, as a dataset run's ModelRunner has them
        self.layouts = [dict(layouts or {}), getattr(adapter, "layouts", None)]
        adapter.module.eval().to(self.device)

    def generate(self, indices: torch.Tensor, capture: Optional[LayerCapture] = None):
        """(images uint8 [B, 3, H, W], captured maps or None) of probe ``indices``."""
        z = latents(indices.tolist(), self.info.latent_shape, self.seed).to(self.device)
        with torch.no_grad():
            if capture is None:
                output, maps = self.adapter.module(z), None
            else:
                maps = capture(z)
                output = capture.output
        return to_images(output, self.info, self.adapter.spec), maps

    @contextlib.contextmanager
    def capturing(self, layers: Sequence[str],
                  on_labels: Optional[Callable[[ProbeBatch], None]] = None) -> Iterator[Step]:
        with LayerCapture(self.adapter.module, layers, stop_early=False, layouts=self.layouts,
                          dtype=torch.float32) as capture:
            def step(batch: ProbeBatch):
                images, maps = self.generate(batch.indices, capture)
                labelled = self.labeller(batch.indices, images, self.device)
                if on_labels is not None:
                    on_labels(labelled)
                return {l: finite_maps(l, m, labelled) for l, m in maps.items()}, labelled

            yield step
