"""ndcore: high-throughput Network Dissection.

    import ndcore
    result = ndcore.dissect("torchvision:resnet18", ["layer3", "layer4"], "broden:/data/broden1_224",
                            weights="resnet18.pth", out="runs/r18")
    result["layer4"].summary()
"""

from __future__ import annotations

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (plugins import it from here)

__all__ = ["__version__", "hookimpl", "dissect", "load_result"]


def dissect(model, layers, dataset, out=None, *, weights=None, random_init=False,
            normalize=None, resize=None, quiet=True, **options):
    """Dissect ``layers`` of ``model`` on ``dataset``; returns a DissectionResult.

    ``model`` is a spec (``torchvision:resnet18``, ``python:file.py:factory``, ``demo``), a
    :class:`~ndcore.models.ModelAdapter` or an ``nn.Module``; ``dataset`` a spec
    (``broden:DIR``, ``synthetic``) or a ProbeSource. ``options`` are the fields of
    :class:`~ndcore.engine.DissectOptions` (union, quantile, cutoff, categories, thresholds,
    quantile_on, batch_size, device, workers, topk, max_images).
    """
    from .api import run_dissection

    return run_dissection(model, layers, dataset, out, weights=weights, random_init=random_init,
                          normalize=normalize, resize=resize, quiet=quiet, **options)


def load_result(directory, **relabel):
    """Load a saved run; ``union``, ``cutoff``, ``categories`` relabel it without the model."""
    from .results import DissectionResult

    return DissectionResult.load(directory, **relabel)
