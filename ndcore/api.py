"""Running a dissection from specs or objects (shared by ``ndcore.dissect`` and the CLI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence, Union

from .data.probesets.images import ImageFolderSource
from .data.validate import ItemValidator
from .data.view import SourceView
from .engine import Dissection, DissectOptions, SeriesDissection
from .engine.series import SeriesResult
from .errors import NdcoreError
from .gan.dissection.run import GeneratorDissection, make_generator_source
from .plugins import DatasetRequest, get_plugin_manager
from .results import DissectionResult
from .results.series import Series, SeriesMember, member_names, series_x
from .results.thumbnails import write_thumbnails
from .specs import resolve_dataset, resolve_model, resolve_segmenter  # noqa: F401 (public here)

# What a run writes besides its results: small copies of the top images that have no file, so
# that the report, drawn later from the run's files alone, can show them.
RUN_OUTPUTS = (write_thumbnails,)


def run_options(options: Optional[DissectOptions], fields) -> DissectOptions:
    """The run's options: ``options`` (the command line's) with ``fields`` (the Python API's
    keywords) in place of its own; checked when made."""
    return DissectOptions(**fields) if options is None else replace(options, **fields)


def run_dissection(model, layers, dataset, out=None, *, weights=None, random_init=False,
                   normalize=None, resize=None, quiet=True, weights_sha256=None,
                   segmenter=None, options: Optional[DissectOptions] = None,
                   **fields) -> DissectionResult:
    """``segmenter`` (a spec or a Segmenter) labels a dataset of unlabelled images on the fly:
    ``images:DIR`` (``--dataset images:DIR --segmenter SEG``)."""
    opts = run_options(options, fields)
    adapter = resolve_model(model, weights, random_init, normalize, resize,
                            weights_sha256=weights_sha256)
    source = probe_source(dataset, segmenter, opts, adapter.preprocess.resize)
    if isinstance(layers, str):
        layers = [l for l in layers.split(",") if l]
    try:
        run = Dissection(adapter, layers, source, opts, Path(out) if out else None, quiet=quiet,
                         item_check=ItemValidator(source.vocabulary, source.origin),
                         outputs=RUN_OUTPUTS)
        return run.run()
    finally:
        close_segmenter(source)


def run_series(models: Union[str, Sequence[str]], layers, dataset, out, *,
               weights: Sequence[str] = (), x: Optional[Sequence[float]] = None,
               x_label: Optional[str] = None, random_init=False, normalize=None, resize=None,
               quiet=True, segmenter=None, options: Optional[DissectOptions] = None,
               **fields) -> Optional[SeriesResult]:
    """Dissect a series of models over one pass of the probe data: ``out/NAME`` per member
    (each equal to a separate :func:`run_dissection` of it) and ``out/series.json``.

    One model with several ``weights`` (checkpoints of one architecture), or several models,
    each with its weights (``weights`` empty, or one per model). ``layers``: one list for
    every member, or one per model (a list of lists / comma strings). ``x``: the members'
    x-axis values (default: the iterations in the weights' file names, else the order)."""
    opts = run_options(options, fields)
    pairs = series_members(models, weights)
    member_layers = series_layers(layers, 1 if isinstance(models, str) else len(models),
                                  len(pairs))
    labels = [w if w is not None else m for m, w in pairs]
    names = member_names(labels)
    xs, x_name = series_x(labels, x, x_label)
    adapters = [resolve_model(m, w, random_init, normalize, resize) for m, w in pairs]
    sizes = {tuple(a.preprocess.resize) if a.preprocess.resize else None for a in adapters}
    if len(sizes) > 1:  # the probe images are read once, at one size, for every member
        shown = ", ".join(f"{label}: {a.preprocess.resize or 'as stored'}"
                          for label, a in zip(labels, adapters))
        raise NdcoreError(f"the models of a series must take the same images ({shown}); give "
                          f"--resize, or dissect them apart")
    first = adapters[0]
    source = probe_source(dataset, segmenter, opts, first.preprocess.resize)
    out = Path(out)
    check = ItemValidator(source.vocabulary, source.origin)
    try:
        runs, members = [], []
        for (model, w), adapter, name, x_value, model_layers in zip(
                pairs, adapters, names, xs, member_layers):
            try:
                runs.append(Dissection(adapter, model_layers, source, opts, out / name,
                                       quiet=quiet, item_check=check, outputs=RUN_OUTPUTS))
            except NdcoreError as e:
                raise type(e)(f"{name}: {e}") from None
            members.append(SeriesMember(name, adapter.spec, str(Path(w).resolve()) if w else None,
                                        list(runs[-1].layers), x_value))
        summary = Series(out, members, x_name)
        return SeriesDissection(runs, summary, quiet=quiet).run()
    finally:
        close_segmenter(source)


def series_members(models: Union[str, Sequence[str]],
                   weights: Sequence[Optional[str]]) -> List[tuple]:
    """(model, weights) per member: one model with each weights file, several models without
    weights, or one weights file per model, paired in order."""
    models = [models] if isinstance(models, str) else list(models)
    weights = list(weights or [])
    if not models:
        raise NdcoreError("a series needs --model")
    if len(models) == 1:
        return [(models[0], w) for w in weights] or [(models[0], None)]
    if not weights:
        return [(m, None) for m in models]
    if len(weights) != len(models):
        raise NdcoreError(f"--model given {len(models)} times and --weights {len(weights)}: "
                          "give one --model for many --weights, or one --weights per --model")
    return list(zip(models, weights))


def series_layers(layers, models: int, members: int) -> List[List[str]]:
    """Each member's layers: ``layers`` is one list for every member (``"a,b"`` or
    ``["a", "b"]``), or one list per model (``[["a"], ["b,c"]]``), paired in order."""
    def as_list(value) -> List[str]:
        return [l for l in value.split(",") if l] if isinstance(value, str) else list(value)

    if isinstance(layers, str) or all(isinstance(l, str) for l in layers):
        return [as_list(layers)] * members
    if len(layers) == 1:
        return [as_list(layers[0])] * members
    if len(layers) != models or models != members:
        raise NdcoreError(f"--layers given {len(layers)} times and --model {models}: give "
                          "--layers once (for every model) or once per --model")
    return [as_list(l) for l in layers]


def probe_source(dataset, segmenter, opts: DissectOptions, resize):
    """The run's probe source: ``dataset`` as a spec or object resolves it, or its images
    labelled by ``segmenter`` (see :func:`labelled_source`)."""
    if segmenter is not None:
        return labelled_source(dataset, segmenter, opts.categories, opts.max_images, resize)
    return resolve_dataset(dataset, opts.categories, opts.max_images, resize)


def close_segmenter(source) -> None:
    """Close the segmenter a labelled source built from a spec (it is the source's own)."""
    inner = getattr(source, "source", None)
    if getattr(inner, "owns_segmenter", False):
        inner.close()


def labelled_source(dataset, segmenter, categories=None, max_images=None,
                    resize=None) -> SourceView:
    """The source ``dataset`` names (``images:DIR``), its images labelled by ``segmenter``: a
    spec goes to the dataset's factory (``DatasetRequest.options["segmenter"]``), one marked
    ``accepts_segmenter``; a Segmenter object labels ``images:DIR``."""
    pm = get_plugin_manager()
    reg = pm.find("dataset", dataset)[0] if isinstance(dataset, str) else None
    if reg is None or not getattr(reg.factory, "accepts_segmenter", False):
        what = dataset if isinstance(dataset, str) else "a probe source object"
        raise NdcoreError(f"--segmenter with --dataset {what}: its images have labels of their "
                          f"own, and a segmenter labels images:DIR; give --dataset SPEC alone, "
                          f"--segmenter SPEC alone (a generator's samples), or both with "
                          f"images:DIR")
    request = DatasetRequest(categories=list(categories) if categories else None,
                             max_images=max_images, resize=tuple(resize) if resize else None)
    if isinstance(segmenter, str):
        request.options["segmenter"] = segmenter
        source, origin = pm.resolve("dataset", dataset, request)
    else:
        target = dataset.partition(":")[2]
        seg, spec = resolve_segmenter(segmenter)
        source, origin = ImageFolderSource(target, seg, spec, spec=dataset), reg.origin
    return SourceView(source, max_images=max_images, categories=categories, resize=resize,
                      origin=origin)


def run_generator_dissection(model, layers, segmenter, out=None, *, samples: int = 1000,
                             seed: int = 0, weights=None, random_init=False,
                             weights_sha256=None,
                             latent_shape=None, quiet=True,
                             options: Optional[DissectOptions] = None,
                             **fields) -> DissectionResult:
    """Dissect a generator's ``layers`` on ``samples`` of its own images (z ~ N(0, I) with
    ``seed``), labelled by ``segmenter``."""
    opts = run_options(options, fields)
    adapter = resolve_model(model, weights, random_init, weights_sha256=weights_sha256)
    seg, spec = resolve_segmenter(segmenter)
    try:
        source = make_generator_source(adapter, seg, spec, samples, seed, latent_shape)
        if isinstance(layers, str):
            layers = [l for l in layers.split(",") if l]
        run = GeneratorDissection(source, layers, opts, Path(out) if out else None,
                                  quiet=quiet, outputs=RUN_OUTPUTS)
        return run.run()
    finally:
        if seg is not segmenter:  # built here from a spec: ours to close
            seg.close()
