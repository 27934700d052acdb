"""Building a run from specs or objects (shared by ``ndcore.dissect`` and the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .data.probe import ProbeSource
from .data.validate import ItemValidator, check_probe_source
from .data.view import SourceView, source_name
from .engine import Dissection, DissectOptions
from .errors import DatasetError
from .models import ModelAdapter, ModelRequest, parse_normalize
from .plugins import DatasetRequest, get_plugin_manager
from .results import DissectionResult


def resolve_model(model: Union[str, ModelAdapter, nn.Module], weights: Optional[str] = None,
                  random_init: bool = False, normalize: Optional[str] = None,
                  resize: Optional[Tuple[int, int]] = None) -> ModelAdapter:
    if isinstance(model, str):
        if random_init and not weights:
            torch.manual_seed(0)  # random weights, but the same ones every time (reports, explain)
        adapter = get_plugin_manager().build_model(model, ModelRequest(weights, random_init))
    elif isinstance(model, ModelAdapter):
        adapter = model
    elif isinstance(model, nn.Module):
        adapter = ModelAdapter(spec=f"module:{type(model).__name__}", module=model)
    else:
        raise TypeError(f"model must be a spec, a ModelAdapter or an nn.Module, not {type(model)}")
    if normalize:
        adapter.preprocess = parse_normalize(normalize)
    if resize:
        adapter.preprocess.resize = tuple(resize)
    return adapter


def resolve_dataset(dataset: Union[str, ProbeSource], categories: Optional[Sequence[str]] = None,
                    max_images: Optional[int] = None,
                    resize: Optional[Tuple[int, int]] = None) -> SourceView:
    """The probe source a spec names (or the one given), as a run reads it: ``max_images``,
    ``categories`` and ``resize`` applied by the engine whatever the source did with them."""
    origin = None
    if isinstance(dataset, str):
        request = DatasetRequest(categories=list(categories) if categories else None,
                                 max_images=max_images,
                                 resize=tuple(resize) if resize else None)
        source, origin = get_plugin_manager().create("dataset", dataset, request)
    else:
        source = dataset
        problem = check_probe_source(source)
        if problem:
            problem = problem.replace("returned a source whose ", "its ", 1)
            raise DatasetError(f"{source_name(source)}: {problem.replace('returned ', 'is ', 1)}")
    if isinstance(source, SourceView):
        return source
    return SourceView(source, max_images=max_images, categories=categories, resize=resize,
                      origin=origin)


def run_dissection(model, layers, dataset, out=None, *, weights=None, random_init=False,
                   normalize=None, resize=None, quiet=True, **options) -> DissectionResult:
    opts = DissectOptions(**options)
    opts.validate()
    adapter = resolve_model(model, weights, random_init, normalize, resize)
    source = resolve_dataset(dataset, opts.categories, opts.max_images,
                             adapter.preprocess.resize)
    if isinstance(layers, str):
        layers = [l for l in layers.split(",") if l]
    run = Dissection(adapter, layers, source, opts, Path(out) if out else None, quiet=quiet,
                     item_check=ItemValidator(source.vocabulary, source.origin))
    return run.run()


def resolve_segmenter(segmenter):
    """A segmenter object, or the one a spec names (``colors``, a plugin's ``NAME:TARGET``)."""
    from .gan.segmenter_registry import build_segmenter
    from .gan.segmenters import Segmenter

    if isinstance(segmenter, Segmenter):
        return segmenter, getattr(segmenter, "name", type(segmenter).__name__)
    return build_segmenter(segmenter), segmenter


def run_generator_dissection(model, layers, segmenter, out=None, *, samples: int = 1000,
                             seed: int = 0, weights=None, random_init=False,
                             latent_shape=None, quiet=True, **options) -> DissectionResult:
    """Dissect a generator's ``layers`` on ``samples`` of its own images (z ~ N(0, I) with
    ``seed``), labelled by ``segmenter``."""
    from .gan.dissect import GeneratorDissection, make_generator_source

    opts = DissectOptions(**options)
    opts.validate()
    adapter = resolve_model(model, weights, random_init)
    seg, spec = resolve_segmenter(segmenter)
    try:
        source = make_generator_source(adapter, seg, spec, samples, seed, latent_shape)
        if isinstance(layers, str):
            layers = [l for l in layers.split(",") if l]
        run = GeneratorDissection(source, layers, opts, Path(out) if out else None,
                                  quiet=quiet)
        return run.run()
    finally:
        if seg is not segmenter:  # built here from a spec: ours to close
            seg.close()
