"""Running a dissection from specs or objects (shared by ``ndcore.dissect`` and the CLI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from .data.probesets.images import ImageFolderSource
from .data.validate import ItemValidator
from .data.view import SourceView
from .engine import Dissection, DissectOptions
from .errors import NdcoreError
from .gan.dissection.run import GeneratorDissection, make_generator_source
from .plugins import DatasetRequest, get_plugin_manager
from .results import DissectionResult
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
    labelled = None
    if segmenter is not None:
        labelled = labelled_source(dataset, segmenter, opts.categories, opts.max_images,
                                   adapter.preprocess.resize)
    source = labelled or resolve_dataset(dataset, opts.categories, opts.max_images,
                                         adapter.preprocess.resize)
    if isinstance(layers, str):
        layers = [l for l in layers.split(",") if l]
    try:
        run = Dissection(adapter, layers, source, opts, Path(out) if out else None, quiet=quiet,
                         item_check=ItemValidator(source.vocabulary, source.origin),
                         outputs=RUN_OUTPUTS)
        return run.run()
    finally:
        if labelled is not None and getattr(labelled.source, "owns_segmenter", False):
            labelled.source.close()  # the segmenter it built from a spec


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
