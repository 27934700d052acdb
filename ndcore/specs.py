"""Turning specs into objects: a model, a probe source or a segmenter from what a user names
(``torchvision:resnet18``, ``broden:DIR``, ``colors``), and a finished run's model from its
config.json. Shared by the Python API, the CLI, interventions and the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .data.probe import ProbeSource
from .data.segmenters import Segmenter
from .data.validate import check_probe_source
from .data.view import SourceView, source_name
from .errors import DatasetError, NdcoreError
from .models import (ModelAdapter, ModelRequest, Preprocess, check_weights_file, parse_normalize,
                     parse_sha256, sha256_in_name, verify_sha256)
from .plugins import DatasetRequest, get_plugin_manager


def resolve_model(model: Union[str, ModelAdapter, nn.Module], weights: Optional[str] = None,
                  random_init: bool = False, normalize: Optional[str] = None,
                  resize: Optional[Tuple[int, int]] = None, *,
                  weights_sha256: Optional[str] = None) -> ModelAdapter:
    """``weights_sha256``: the weights file's sha256 or a prefix of it (``--weights-sha256``);
    without it, a hash prefix in the file's name (``resnet18-f37072fd.pth``) is checked."""
    expected = parse_sha256(weights_sha256) if weights_sha256 else None
    if expected and not weights:
        raise NdcoreError("--weights-sha256: checks the file that --weights names; give "
                          "--weights FILE too")
    if isinstance(model, str):
        if random_init and not weights:
            torch.manual_seed(0)  # random weights, but the same ones every time (reports, explain)
        request = ModelRequest(weights, random_init, weights_sha256=expected)
        adapter, _ = get_plugin_manager().resolve("model", model, request)
        if weights:
            _verify_plugin_weights(adapter, weights, expected)
        adapter.random_init = adapter.random_init or request.randomised  # a run's caveat
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


def _verify_plugin_weights(adapter: ModelAdapter, weights: str, expected: Optional[str]) -> None:
    """The sha256 check for a plugin that loaded ``weights`` without apply_weights (which checks
    it before loading): free when the plugin reports the file's sha256, a hash otherwise."""
    if not (expected or sha256_in_name(weights)):
        return
    digest = adapter.weights_sha256 or ""
    same_file = adapter.weights and Path(adapter.weights).resolve() == Path(weights).resolve()
    if same_file and re.fullmatch(r"[0-9a-f]{64}", digest):
        verify_sha256(weights, digest, expected)
    else:
        check_weights_file(weights, expected)


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
        source, origin = get_plugin_manager().resolve("dataset", dataset, request)
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


def resolve_segmenter(segmenter: Union[str, Segmenter]) -> Tuple[Segmenter, str]:
    """A segmenter object and its spec: the one given, or the one a spec names (``colors``, a
    plugin's ``NAME:TARGET``; the plugin manager checks what the factory returns)."""
    if isinstance(segmenter, Segmenter):
        return segmenter, getattr(segmenter, "name", type(segmenter).__name__)
    return get_plugin_manager().resolve("segmenter", segmenter, None)[0], segmenter


def rebuild_model(config: dict) -> ModelAdapter:
    """The run's model and preprocessing, from config.json (random init is seeded)."""
    model = config.get("model", {})
    if not model.get("spec"):
        raise NdcoreError("config.json names no model spec; cannot rebuild the model")
    weights = model.get("weights")
    adapter = resolve_model(model["spec"], weights=weights, random_init=weights is None)
    recorded = model.get("weights_sha256")
    if recorded and adapter.weights_sha256 and recorded != adapter.weights_sha256:
        raise NdcoreError(f"{weights}: the weights changed since the run (sha256 "
                          f"{adapter.weights_sha256[:12]}... vs {recorded[:12]}... in config.json)")
    pre = model.get("preprocess")
    if pre:
        adapter.preprocess = Preprocess(tuple(pre["mean"]), tuple(pre["std"]),
                                        tuple(pre["resize"]) if pre.get("resize") else None,
                                        pre.get("name", "custom"))
    return adapter
