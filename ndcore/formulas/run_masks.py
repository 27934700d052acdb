"""A finished run's unit masks and label masks, image by image, for the formula search.

The masks are the dissection's own (docs/method.md sections 3-4): the run's model (or
generator) is rebuilt from config.json and its own model stage and probe stream are used again
(same preprocessing, layout, precision, batch size, categories and ``--max-images``), each map
is upsampled by the op the dissection uses (``ops.upsample_bilinear``, the definition the fused
``tally`` kernels match bit for bit) and compared strictly with the unit's saved threshold.

A finished run keeps no maps: pass 1's kept maps live with the checkpoint or in a scratch
folder, and both are removed when the run completes (``engine.run``: ``checkpoint.remove``,
``engine.scratch``). So the maps always come from running the model again, in batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..api import labelled_source
from ..engine import Dissection, DissectOptions
from ..engine.stage import RotatingStage
from ..engine.stream import BatchGrid
from ..errors import DatasetError, LayerError, NdcoreError, suggest
from ..gan.dissection.run import GeneratorDissection, GeneratorSource
from ..gan.editing.intervene import load_generator_run
from ..models import ModelAdapter
from ..ops.reference import unit_masks
from ..results import DissectionResult, LayerResult
from ..specs import rebuild_model, resolve_dataset

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass
class ImageMasks:
    """One probe image: its label planes and image-level labels (label numbers, 0 = none),
    and the chosen units' mask pixels as index pairs (mask_units[i], mask_pixels[i]): unit
    (0-based among the chosen), flat pixel index into [sh, sw]."""

    index: int
    planes: np.ndarray  # int32 [P, sh, sw]
    image_labels: List[int]
    n_units: int
    mask_units: np.ndarray  # int64 [k]
    mask_pixels: np.ndarray  # int64 [k]

    @property
    def masks(self) -> np.ndarray:
        """bool [n_units, sh, sw], dense (for tests and small runs)."""
        sh, sw = self.planes.shape[-2:]
        out = np.zeros((self.n_units, sh * sw), dtype=bool)
        out[self.mask_units, self.mask_pixels] = True
        return out.reshape(self.n_units, sh, sw)


@dataclass
class RunLayer:
    """A finished run's layer, as the formula search reads it."""

    directory: Path
    result: DissectionResult
    layer: str

    @property
    def layer_result(self) -> LayerResult:
        return self.result.layers[self.layer]

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.layer_result.thresholds, dtype=np.float32).reshape(-1)

    @property
    def num_units(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def label_names(self) -> List[str]:
        """The run's label names by label number (index 0: no label)."""
        full = self.layer_result.full_vocabulary or self.result.vocabulary
        return list(full.label_names)

    @property
    def categories(self) -> List[str]:
        full = self.layer_result.full_vocabulary or self.result.vocabulary
        return list(full.categories)

    @property
    def images(self) -> int:
        return int(self.result.config.get("dataset", {}).get("images", 0))

    @property
    def is_generator(self) -> bool:
        return self.result.config.get("dataset", {}).get("kind") == "generator"


def open_run(run_dir, layer: str) -> RunLayer:
    """The finished run in ``run_dir`` and its ``layer``; one-line errors for an unfinished
    run, an unknown layer or a run whose masks are not one per unit."""
    run_dir = Path(run_dir)
    result = DissectionResult.load(run_dir)  # refuses a missing or unfinished run
    layers = list(result.layers)
    if layer not in result.layers:
        raise LayerError(f"{run_dir}: the run has no layer {layer!r}{suggest(layer, layers)}; "
                         f"it has {', '.join(layers)}")
    if result.layers[layer].rule != "quantile":
        raise NdcoreError(f"{run_dir}: the run used --threshold {result.layers[layer].rule}, "
                          "a threshold per (unit, concept): a unit has no single mask to "
                          "explain with a formula")
    return RunLayer(run_dir, result, layer)


def check_units(run: RunLayer, units: Optional[Sequence[int]]) -> List[int]:
    """The units to explain (all when None), each checked against the layer's size."""
    if units is None:
        return list(range(run.num_units))
    out = []
    for u in units:
        if not 0 <= int(u) < run.num_units:
            raise NdcoreError(f"unit {u}: layer {run.layer!r} has units 0-{run.num_units - 1}")
        out.append(int(u))
    if not out:
        raise NdcoreError("no units to explain")
    return list(dict.fromkeys(out))


def check_categories(run: RunLayer, categories: Optional[Sequence[str]]) -> List[str]:
    """``categories`` (the run's own when None), each one the run has."""
    if not categories:
        return run.categories
    for c in categories:
        if c not in run.categories:
            raise NdcoreError(f"{run.directory}: the run has no category {c!r}"
                              f"{suggest(c, run.categories)}; it has "
                              f"{', '.join(run.categories)}")
    return list(dict.fromkeys(categories))


def _options(config: dict, device: str, workers: int) -> DissectOptions:
    """The run's options, set up to make maps only (no files, no thresholds to load)."""
    names = {f.name for f in dataclasses.fields(DissectOptions)}
    saved = {k: v for k, v in config.get("options", {}).items() if k in names}
    if "rotate_alpha" in saved:
        saved["rotate_alpha"] = tuple(saved["rotate_alpha"])
    # given thresholds are already in thresholds.npy; the rest only decide speed and files
    saved.update(thresholds={}, device=device, workers=workers, second_pass="forward",
                 cache_dir=None, overwrite=False, checkpoint_every=0.0)
    return DissectOptions(**saved)


def _device(run: RunLayer, device: Optional[str]) -> str:
    """The device asked for; else the run's own when this machine has it (the same device
    gives the same float32 maps), else the CPU."""
    if device:
        return device
    recorded = str(run.result.config.get("options", {}).get("device", "cpu"))
    if recorded.startswith("cuda") and torch.cuda.is_available():
        return recorded
    return "cpu"


def _dissection(run: RunLayer, options: DissectOptions, closers: list,
                model: Optional[ModelAdapter] = None) -> Dissection:
    """The run's Dissection object rebuilt from config.json (never run: only its model stage
    and probe stream are used); ``model`` overrides the model config.json names."""
    try:
        dissection = _rebuild(run, options, closers, model)
    except NdcoreError as e:  # say why the model is needed at all
        error = type(e)(f"{run.directory}: a finished run keeps no maps, so its masks need "
                        f"its model and probe images again, and {e}")
        error.details = e.details
        raise error from None
    names = list(dissection.source.vocabulary.label_names)
    if names != run.label_names:
        raise DatasetError(f"{run.directory}: the probe source's labels are not the run's "
                           "(vocabulary.json): the probe set changed since the run")
    return dissection


def _rebuild(run: RunLayer, options: DissectOptions, closers: list,
             model: Optional[ModelAdapter]) -> Dissection:
    config = run.result.config
    if run.is_generator:
        gen = load_generator_run(run.directory, options.device)
        closers.append(gen.close)
        dataset = config["dataset"]
        source = GeneratorSource(model or gen.adapter, gen.info, gen.segmenter,
                                 gen.segmenter_spec, int(dataset["samples"]),
                                 int(dataset["seed"]))
        return GeneratorDissection(source, [run.layer], options, quiet=True)
    adapter = model or rebuild_model(config)
    dataset = config.get("dataset", {})
    spec = dataset.get("spec")
    if not spec:
        raise DatasetError("config.json names no probe source")
    if dataset.get("segmenter"):  # images:DIR, labelled by the run's segmenter
        source = labelled_source(spec, dataset["segmenter"], options.categories,
                                 options.max_images, adapter.preprocess.resize)
        closers.append(source.source.close)
    else:
        source = resolve_dataset(spec, options.categories, options.max_images,
                                 adapter.preprocess.resize)
    if len(source) != run.images:
        raise DatasetError(f"{spec} has {len(source)} probe images now but the run had "
                           f"{run.images}: the probe set changed since the run")
    return Dissection(adapter, [run.layer], source, options, quiet=True)


def _label_lookup(dissection: Dissection, categories: Sequence[str]) -> np.ndarray:
    """Label-space id -> label number, 0 where none of the id's categories is in
    ``categories`` (docs/method.md section 6: a label counts where such a plane carries it)."""
    matrix = dissection.labelspace.label_matrix(categories)  # [V, L] 0/1, one 1 per kept id
    return (matrix @ np.arange(matrix.shape[1])).astype(np.int32)


def iter_masks(run: RunLayer, units: Sequence[int], categories: Optional[Sequence[str]] = None,
               *, device: Optional[str] = None, batch_size: Optional[int] = None,
               workers: int = 0, progress: Optional[Progress] = None,
               model: Optional[ModelAdapter] = None) -> Iterator[ImageMasks]:
    """Every probe image of the run, in probe order: its labels in ``categories`` (the run's
    when None) and the masks of ``units``, M_u(x) = upsample(A_u(x)) > T_u. ``model``
    overrides the model rebuilt from config.json (for models that no spec can build)."""
    return _masks(run, check_units(run, units), check_categories(run, categories),
                  device=device, batch_size=batch_size, workers=workers, progress=progress,
                  model=model)


def _masks(run: RunLayer, units: List[int], categories: List[str], *, device: Optional[str],
           batch_size: Optional[int], workers: int, progress: Optional[Progress],
           model: Optional[ModelAdapter]) -> Iterator[ImageMasks]:
    """``iter_masks`` for units and categories already checked."""
    config = run.result.config
    options = _options(config, _device(run, device), workers)
    closers: list = []
    try:
        dissection = _dissection(run, options, closers, model)
        lookup = torch.from_numpy(_label_lookup(dissection, categories))
        dev = torch.device(options.device)
        size = batch_size or int(config.get("run", {}).get("batch_size") or options.batch_size)
        grid = BatchGrid(len(dissection.source), size)
        stage = dissection._stage(dev)  # the run's own model stage: the run's maps
        if dissection.derived:
            stage = RotatingStage(stage, dissection.derived, options.rotate_seed)
        stream = dissection._stream(grid, dev)
        thresholds = torch.from_numpy(run.thresholds).to(dev)[units]
        pick = torch.tensor(units, dtype=torch.long, device=dev)
        done = 0
        with stage.capturing([run.layer]) as step:
            for _, batch in stream.batches(grid.todo(())):
                maps, labelled = step(batch)
                yield from _batch_masks(run, maps[run.layer], labelled, pick, thresholds,
                                        lookup)
                done += len(labelled)
                if progress:
                    progress(done, grid.size)
    finally:
        for close in closers:
            close()


def _batch_masks(run: RunLayer, maps: torch.Tensor, batch, pick: torch.Tensor,
                 thresholds: torch.Tensor, lookup: torch.Tensor) -> Iterator[ImageMasks]:
    if maps.shape[1] != run.num_units:
        raise NdcoreError(f"layer {run.layer!r} has {maps.shape[1]} units now but the run saved "
                          f"{run.num_units} thresholds: the model is not the one dissected")
    size = tuple(batch.labels.shape[-2:])
    maps = maps.index_select(1, pick)
    planes = lookup[batch.labels.long().cpu()].numpy()
    image_labels = lookup[batch.image_labels.long().cpu()].numpy()
    for b, index in enumerate(batch.indices.tolist()):
        # one image's masks at a time, on the device; only their pixels' indices leave it
        masks = unit_masks(maps[b:b + 1], thresholds, size, crossing_only=True)[0]
        u, pix = masks.flatten(1).nonzero(as_tuple=True)
        own = [int(l) for l in dict.fromkeys(image_labels[b].tolist()) if l]
        yield ImageMasks(int(index), planes[b], own, len(pick), u.cpu().numpy(),
                         pix.cpu().numpy())


def feed_builder(builder, run: RunLayer, units: List[int], categories: List[str], *,
                 device: Optional[str] = None, batch_size: Optional[int] = None,
                 workers: int = 0, progress: Optional[Progress] = None,
                 model: Optional[ModelAdapter] = None) -> int:
    """Hand every probe image of the run to ``builder.add_image_pixels`` (label planes,
    image-level labels, the units' mask pixels); returns the number of images. ``units`` and
    ``categories`` as ``check_units`` and ``check_categories`` return them (not checked again)."""
    n = 0
    for item in _masks(run, units, categories, device=device, batch_size=batch_size,
                       workers=workers, progress=progress, model=model):
        builder.add_image_pixels(item.planes, item.image_labels, item.mask_units,
                                 item.mask_pixels)
        n += 1
    return n


def masks_of(run: RunLayer, units: Sequence[int], **kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """(probe indices [N], masks bool [N, len(units), sh, sw]) of every image: for tests and
    small runs only (it holds every mask)."""
    items = list(iter_masks(run, units, **kwargs))
    return (np.asarray([i.index for i in items]), np.stack([i.masks for i in items]))
