"""Dissecting a generator: its own samples are the probe images, a segmenter labels them.

The run is an ordinary :class:`~ndcore.engine.Dissection` with two stages swapped: the stream
yields probe indices, and the model stage generates, captures and segments
(:mod:`ndcore.gan.dissection.stage`). Thresholds, the fused op, counts, checkpoints and
torch.distributed are the same code as for datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...capture import LayerCapture, check_layout_keys, declared_layouts
from ...data.labelspace import LabelSpace
from ...data.probe import ProbeItem, ProbeSource, ProbeSourceInfo
from ...engine import Dissection, DissectOptions
from ...engine.run import RunOutput
from ...engine.stream import BatchGrid
from ...errors import NdcoreError
from ...models import ModelAdapter
from ..generator import GeneratorInfo, require_generator
from ..latents import latents
from ...data.segmenters import Segmenter
from .stage import GeneratorStage, GeneratorStream, Labeller


class GeneratorSource(ProbeSource):
    """A generator's samples as a probe source: sample i is G(z_i), labelled by a segmenter.

    The engine streams it through :class:`GeneratorStage`; item access (``read``,
    ``load_image``) serves reports and the Python API, one sample at a time.
    """

    def __init__(self, adapter: ModelAdapter, info: GeneratorInfo, segmenter: Segmenter,
                 segmenter_spec: str, samples: int, seed: int) -> None:
        if samples < 1:
            raise NdcoreError(f"--samples {samples}: must be >= 1")
        self.adapter, self.generator, self.segmenter = adapter, info, segmenter
        self.samples, self.seed = samples, seed
        self.vocabulary = segmenter.vocabulary
        self.segmenter_spec = segmenter_spec
        self.info = ProbeSourceInfo(
            spec=f"generator:{adapter.spec}", kind="generator", size=samples,
            extra={"segmenter": segmenter_spec, "samples": samples, "seed": seed,
                   "latent_shape": list(info.latent_shape),
                   "output_range": list(info.output_range)})

    def __len__(self) -> int:
        return self.samples

    def stage(self, labelspace, device, layouts=None) -> GeneratorStage:
        labeller = Labeller(self.segmenter, labelspace, self.segmenter_spec)
        return GeneratorStage(self.adapter, self.generator, labeller, self.seed, device, layouts)

    def load_images(self, indices: Sequence[int], batch_size: int = 100):
        """uint8 [H, W, 3] images of samples ``indices``, generated a batch at a time."""
        stage = self._cpu_stage()
        for start in range(0, len(indices), batch_size):
            images, _ = stage.generate(torch.tensor(list(indices[start:start + batch_size])))
            yield from images.permute(0, 2, 3, 1).numpy()

    def load_image(self, index: int) -> np.ndarray:
        return next(iter(self.load_images([index])))

    def _cpu_stage(self) -> GeneratorStage:
        if getattr(self, "_stage_cpu", None) is None:
            self._stage_cpu = self.stage(LabelSpace(self.vocabulary), torch.device("cpu"))
        return self._stage_cpu

    def read(self, index: int, image: bool = True, labels: bool = True) -> ProbeItem:
        stage = self._cpu_stage()
        images, _ = stage.generate(torch.tensor([index]))
        seg = self.segmenter.segment(images)
        valid = True if seg.valid is None else bool(seg.valid[0])
        planes = seg.labels[0].to("cpu", torch.int64).numpy().astype(np.int32)
        return ProbeItem(index=index, image=images[0].permute(1, 2, 0).numpy(),
                         planes=planes if labels else planes[:0],
                         annotated=np.full(self.vocabulary.num_categories, valid),
                         label_size=tuple(planes.shape[-2:]),
                         plane_categories=seg.plane_categories)

    def __getitem__(self, index: int) -> ProbeItem:
        return self.read(index)


class GeneratorDissection(Dissection):
    """A dissection whose probe source is a :class:`GeneratorSource`."""

    def __init__(self, source: GeneratorSource, layers: Sequence[str], options: DissectOptions,
                 out: Optional[Path] = None, quiet: bool = False,
                 outputs: Sequence[RunOutput] = ()) -> None:
        super().__init__(source.adapter, layers, source, options, out, quiet, outputs=outputs)

    def _decide_layouts(self):
        """Checks the layer names and ``--layout`` now, and decides every layer's layout on
        sample 0 (one forward pass of one latent), as a dataset run does on its first image:
        the run records them, and interventions address units through them."""
        overrides = dict(self.options.layouts)
        check_layout_keys(overrides, self.captured)
        specs = [overrides, getattr(self.model, "layouts", None)]
        declared_layouts(self.model.module, self.captured, *specs)
        module = self.model.module.eval()
        param = next(iter(module.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        z = latents([0], self.source.generator.latent_shape, self.source.seed).to(device)
        with LayerCapture(module, self.captured, layouts=specs) as capture, torch.no_grad():
            capture(z)
            return {layer: str(capture.layouts[layer]) for layer in self.captured}

    def config(self):
        config = super().config()
        config["dataset"].update(self.source.info.extra)
        return config

    def _stage(self, device: torch.device) -> GeneratorStage:
        return self.source.stage(self.labelspace, device, self.options.layouts)

    def _stream(self, grid: BatchGrid, device: torch.device) -> GeneratorStream:
        return GeneratorStream(grid)


def make_generator_source(model: ModelAdapter, segmenter: Segmenter, segmenter_spec: str,
                          samples: int, seed: int,
                          latent_shape: Optional[Sequence[int]] = None) -> GeneratorSource:
    return GeneratorSource(model, require_generator(model, latent_shape), segmenter,
                           segmenter_spec, samples, seed)
