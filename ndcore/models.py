"""Model adapters: a module plus how to prepare its input.

Adapters are made by factories that plugins register (``torchvision``, ``python``, ...); a spec
``NAME:TARGET`` picks the factory ``NAME`` and passes it ``TARGET``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .errors import NdcoreError

# Presets, on RGB values in [0, 255]: x = (rgb - mean) / std.
NORMALIZE_PRESETS: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    # NetDissect-Lite: one std for all channels (METHOD.md section 3).
    "netdissect": ((124.6901, 118.6897, 109.5388), (57.12, 57.12, 57.12)),
    "none": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # just scale to [0, 1]
}


@dataclass
class Preprocess:
    """uint8 RGB batch -> model input: optional resize, then (x - mean) / std on 0-255 values."""

    mean: Tuple[float, ...] = NORMALIZE_PRESETS["imagenet"][0]
    std: Tuple[float, ...] = NORMALIZE_PRESETS["imagenet"][1]
    resize: Optional[Tuple[int, int]] = None
    name: str = "imagenet"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.resize and tuple(x.shape[-2:]) != tuple(self.resize):
            x = torch.nn.functional.interpolate(x, size=self.resize, mode="bilinear",
                                                align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_json(self) -> Dict:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std),
                "resize": list(self.resize) if self.resize else None}


def parse_normalize(value: str) -> Preprocess:
    """'imagenet', 'netdissect', 'none', or 'MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B' (0-255)."""
    if value in NORMALIZE_PRESETS:
        mean, std = NORMALIZE_PRESETS[value]
        return Preprocess(mean, std, name=value)
    try:
        mean_s, std_s = value.split("/")
        mean = tuple(float(v) for v in mean_s.split(","))
        std = tuple(float(v) for v in std_s.split(","))
        if len(mean) == 1:
            mean = mean * 3
        if len(std) == 1:
            std = std * 3
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError
    except ValueError:
        raise NdcoreError(
            f"--normalize {value!r}: use a preset ({', '.join(NORMALIZE_PRESETS)}) or "
            "'R,G,B/R,G,B' means and stds on 0-255 values"
        ) from None
    return Preprocess(mean, std, name="custom")


@dataclass
class ModelAdapter:
    """What the engine needs of a model."""

    spec: str
    module: nn.Module
    preprocess: Preprocess = field(default_factory=Preprocess)
    input_size: Tuple[int, int] = (224, 224)  # for `ndcore layers`
    weights: Optional[str] = None
    weights_sha256: Optional[str] = None
    description: str = ""


@dataclass
class ModelRequest:
    """What a user asked for, handed to a model factory with the spec's target."""

    weights: Optional[str] = None
    random_init: bool = False


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict_file(path: str | Path) -> Dict[str, torch.Tensor]:
    """A local state dict, loaded safely (weights_only=True), with 'module.' prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise NdcoreError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise NdcoreError(f"{path}: cannot load weights ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NdcoreError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def apply_weights(module: nn.Module, request: ModelRequest, spec: str) -> Optional[str]:
    """Load ``request.weights`` into ``module``; returns its sha256. Random init only if asked."""
    if request.weights:
        state = load_state_dict_file(request.weights)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise NdcoreError(
                f"{request.weights}: does not fit {spec}: {' '.join(first[:3])[:400]}"
            ) from None
        return sha256_of(request.weights)
    if not request.random_init:
        raise NdcoreError(
            f"{spec}: no --weights given; pass a local state dict with --weights FILE, "
            "or --random-init to dissect randomly initialised weights"
        )
    warnings.warn(f"{spec}: using RANDOMLY INITIALISED weights (--random-init)", stacklevel=2)
    return None

