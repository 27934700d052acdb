"""ndcore: high-throughput Network Dissection.

    import ndcore
    result = ndcore.dissect("torchvision:resnet18", ["layer3", "layer4"], "broden:/data/broden1_224",
                            weights="resnet18.pth", out="runs/r18")
    result["layer4"].summary()
"""

from __future__ import annotations

from .hookspecs import hookimpl  # plugins import it from here
from .version import __version__

__all__ = ["__version__", "hookimpl", "dissect", "dissect_series", "dissect_generator",
           "load_result", "edit",
           "Ablate", "Insert", "intervene"]


def dissect(model, layers, dataset, out=None, *, weights=None, random_init=False,
            normalize=None, resize=None, quiet=True, weights_sha256=None, **options):
    """Dissect ``layers`` of ``model`` on ``dataset``; returns a DissectionResult.

    ``model`` is a spec (``torchvision:resnet18``, ``python:file.py:factory``, ``demo``), a
    :class:`~ndcore.models.ModelAdapter` or an ``nn.Module``; ``dataset`` a spec
    (``broden:DIR``, ``synthetic``, ``images:DIR`` with ``segmenter=``: a spec such as
    ``colors`` or a Segmenter, which labels those images) or a ProbeSource. ``options`` are the fields of
    :class:`~ndcore.engine.DissectOptions`, one per ``ndcore dissect`` run flag, with the same
    defaults (``quantile=0.01`` for ``--quantile 0.01``) except ``workers`` (0 here).
    ``weights_sha256`` (full or a prefix) is checked against the ``weights`` file before it is
    loaded, as a hash prefix in its name (``resnet18-f37072fd.pth``) always is.
    """
    from .api import run_dissection

    return run_dissection(model, layers, dataset, out, weights=weights, random_init=random_init,
                          normalize=normalize, resize=resize, quiet=quiet,
                          weights_sha256=weights_sha256, **options)


def dissect_series(model, layers, dataset, out, *, weights=(), x=None, x_label=None,
                   random_init=False, normalize=None, resize=None, quiet=True, **options):
    """Dissect several checkpoints (``weights``, one model) or models (``model`` a list, each
    with its ``weights``, or none) over one pass of the probe data: ``out/NAME`` per member,
    each equal to a separate :func:`dissect` of it, and ``out/series.json``. Returns a
    SeriesResult (``for member, result in series``); ``x``: the members' x-axis values
    (default: the iteration in the weights' file names, else the order). ``layers``: one list
    for every member, or one per model. ``options`` as for :func:`dissect`."""
    from .api import run_series

    return run_series(model, layers, dataset, out, weights=weights, x=x, x_label=x_label,
                      random_init=random_init, normalize=normalize, resize=resize, quiet=quiet,
                      **options)


def dissect_generator(model, layers, segmenter, out=None, *, samples=1000, seed=0, **options):
    """Dissect a generator's ``layers`` on its own samples, labelled by ``segmenter`` (a spec
    such as ``colors``, or a Segmenter); ``options`` as for :func:`dissect`, plus
    ``threshold="best-iou"`` and ``latent_shape``."""
    from .api import run_generator_dissection

    return run_generator_dissection(model, layers, segmenter, out, samples=samples, seed=seed,
                                    **options)


def __getattr__(name):
    # Interventions, imported on first use: ``with ndcore.edit(G, {"main.8": Ablate([3])})``.
    if name in ("edit", "Ablate", "Insert"):
        from .gan.editing import edits

        return getattr(edits, name)
    if name == "intervene":
        from .gan.editing.api import intervene

        return intervene
    raise AttributeError(f"module 'ndcore' has no attribute {name!r}")


def load_result(directory, **relabel):
    """Load a saved run; ``union``, ``cutoff``, ``categories`` relabel it without the model."""
    from .results import DissectionResult

    return DissectionResult.load(directory, **relabel)
