"""Running a dissection from specs or objects (shared by ``ndcore.dissect`` and the CLI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from .data.validate import ItemValidator
from .engine import Dissection, DissectOptions
from .gan.dissection.run import GeneratorDissection, make_generator_source
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
                   options: Optional[DissectOptions] = None, **fields) -> DissectionResult:
    opts = run_options(options, fields)
    adapter = resolve_model(model, weights, random_init, normalize, resize,
                            weights_sha256=weights_sha256)
    source = resolve_dataset(dataset, opts.categories, opts.max_images,
                             adapter.preprocess.resize)
    if isinstance(layers, str):
        layers = [l for l in layers.split(",") if l]
    run = Dissection(adapter, layers, source, opts, Path(out) if out else None, quiet=quiet,
                     item_check=ItemValidator(source.vocabulary, source.origin),
                     outputs=RUN_OUTPUTS)
    return run.run()


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
