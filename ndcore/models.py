"""Model adapters: a module plus how to prepare its input.

Adapters are made by factories that plugins register (``torchvision``, ``python``, ...); a spec
``NAME:TARGET`` picks the factory ``NAME`` and passes it ``TARGET``.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from .errors import NdcoreError

# Presets, on RGB values in [0, 255]: x = (rgb - mean) / std.
NORMALIZE_PRESETS: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    # NetDissect-Lite: one std for all channels (docs/method.md section 8).
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
    # Layouts of layers whose output is not [B, C, H, W] (see ndcore.capture.layouts): layer
    # name or fnmatch pattern -> "nchw" | "nhwc" | "tokens[:skip=K][:grid=HxW]" | "vector"
    # (or a Layout). torchvision's Swin, ConvNeXt, ViT and MaxViT need none: they are
    # recognised from their modules. ``--layout`` overrides these.
    layouts: Dict[str, Union[str, object]] = field(default_factory=dict)
    # A generator (GAN dissection) says so with its latent shape, e.g. (100, 1, 1); its output
    # is RGB in ``output_range``. A python: factory's module may carry ``latent_shape`` instead.
    latent_shape: Optional[Tuple[int, ...]] = None
    output_range: Tuple[float, float] = (-1.0, 1.0)
    # True when the weights are randomly initialised (--random-init): a run records it in
    # config.json and puts :func:`random_init_caveat` at the top of its report.
    random_init: bool = False


@dataclass
class ModelRequest:
    """What a user asked for, handed to a model factory with the spec's target."""

    weights: Optional[str] = None
    random_init: bool = False
    # The weights file's expected sha256, full or a prefix (--weights-sha256); checked by
    # apply_weights before the file is loaded. None: only a hash prefix in the file's name is.
    weights_sha256: Optional[str] = None
    # set by apply_weights when it left the weights random, so that the resolver can mark the
    # adapter (a factory may also ignore random_init and load its own weights)
    randomised: bool = False


def random_init_caveat(spec: str) -> str:
    """The warning, and the run's recorded caveat, of a model with random weights."""
    return f"{spec}: using RANDOMLY INITIALISED weights (--random-init)"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# torch.hub's convention (torchvision's release files: resnet18-f37072fd.pth): the name ends in
# "-" and the first hex digits of the file's sha256. 8 digits at least, so that "-1.pth" or
# "-beef.pth" are not read as hashes.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")
_SHA256_TEXT = re.compile(r"[0-9a-f]{8,64}")


def parse_sha256(value: str, what: str = "--weights-sha256") -> str:
    """``value`` as a lowercase sha256 or prefix of one (8 to 64 hex digits), or one line."""
    text = value.strip().lower()
    text = text[len("sha256:"):] if text.startswith("sha256:") else text
    if not _SHA256_TEXT.fullmatch(text):
        raise NdcoreError(f"{what} {value!r}: expected the weights file's sha256 (8 to 64 hex "
                          "digits, e.g. from `sha256sum FILE`)")
    return text


def sha256_in_name(path: str | Path) -> Optional[str]:
    """The sha256 prefix in a file's name (``resnet18-f37072fd.pth``), as torch.hub reads it."""
    found = _HASH_IN_NAME.findall(Path(path).name)
    return found[-1] if found else None  # the last: the one next to the extension


def check_weights_path(path: str | Path) -> Path:
    """``path`` as a readable file, or one line saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        raise NdcoreError(f"{path}: is a directory, not a weights file (give the .pth file in it)")
    if not path.exists():
        raise NdcoreError(f"{path}: weights file not found")
    if not path.is_file():
        raise NdcoreError(f"{path}: not a regular file, not a weights file")
    return path


def verify_sha256(path: str | Path, digest: str, expected: Optional[str] = None) -> None:
    """Refuse ``path`` (one line) when its sha256 ``digest`` does not start with ``expected``
    (``--weights-sha256``) or, when none is given, with the hash prefix in its name."""
    where = "--weights-sha256"
    if expected is None:
        expected, where = sha256_in_name(path), "its file name"
    if expected is None or digest.startswith(expected):
        return
    more = "..." if len(expected) < len(digest) else ""
    # a name's digits may be no hash (ckpt-20240101.pth): say how to check the file instead
    escape = "" if where == "--weights-sha256" else \
        "; if the name holds no hash, give --weights-sha256 HEX"
    raise NdcoreError(f"{path}: sha256 mismatch: expected {expected}{more} ({where}), the file "
                      f"has {digest[:len(expected)]}{more} (corrupt or incomplete download, or "
                      f"another file){escape}")


def check_weights_file(path: str | Path, expected: Optional[str] = None) -> str:
    """The sha256 of the weights file ``path`` after checking it (see :func:`verify_sha256`),
    before anything unpickles it: a corrupt file can load without an error."""
    path = check_weights_path(path)
    try:
        digest = sha256_of(path)
    except OSError as e:
        raise NdcoreError(f"{path}: cannot read the weights file ({e.strerror or e})") from None
    verify_sha256(path, digest, parse_sha256(expected) if expected else None)
    return digest


def state_sha256(model: ModelAdapter) -> str:
    """sha256 of the module's parameters and buffers (weights that came from no file: a
    python factory, seeded random init), so that a changed model is a different run."""
    h = hashlib.sha256()
    for name, tensor in model.module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if tensor.numel() else b"")
    return "state:" + h.hexdigest()


# Keys under which checkpoints keep a model's state dict (Lightning, torchvision's and timm's
# training references, DeiT, ...), tried in this order, at any depth up to 3.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                   "model_ema", "state_dict_ema")
# Prefixes that wrappers put in front of every key: DataParallel / DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _safe_globals() -> list:
    """Harmless classes that training checkpoints often hold next to the weights."""
    import argparse

    import numpy as np

    allowed = [argparse.Namespace, np.dtype, np.ndarray]
    for where in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(where, fromlist=["scalar", "_reconstruct"])
            allowed += [module.scalar, module._reconstruct]
            break
        except (ImportError, AttributeError):
            continue
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return allowed


def _load_error(path: Path, e: Exception) -> NdcoreError:
    """One line (no ANSI codes, no torch advice) saying why ``path`` is not a weights file."""
    text = _ANSI.sub("", str(e))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        name = found.group(1)
        what = "a whole pickled model" if "models" in name or "nn.modules" in name else \
            "a pickled Python object"
        return NdcoreError(
            f"{path}: holds {what} ({name}), not a state dict; ndcore loads weights only "
            "(torch.load weights_only=True): save model.state_dict() instead")
    if isinstance(e, EOFError) or path.stat().st_size == 0:
        return NdcoreError(f"{path}: the file is empty or truncated, not a weights file")
    # A damaged PyTorch file: the zip reader's or the legacy reader's complaint, without the
    # advice torch appends to it ("This is an internal miniz error. If you are seeing ...").
    damaged = re.search(r"PytorchStreamReader failed reading (?:zip archive: )?(.+?)\.(?:\s|$)",
                        text) or re.search(r"(unexpected EOF.*?)\.(?:\s|$)", text)
    if damaged:
        return NdcoreError(f"{path}: cannot read the weights (truncated or corrupt PyTorch "
                           f"file: {damaged.group(1).strip()})")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    line = detail.group(1) if detail else next(
        (l.strip() for l in text.splitlines() if l.strip()), "")
    return NdcoreError(f"{path}: cannot load weights: not a PyTorch state dict file "
                       f"({type(e).__name__}: {_first_sentence(line)})")


def _first_sentence(text: str, limit: int = 200) -> str:
    """``text`` up to its first full stop, or cut at a word within ``limit`` characters."""
    head = re.split(r"(?<=[^.\s]{2})\.(?:\s|$)", text, maxsplit=1)[0]
    if len(head) <= limit:
        return head
    return head[:limit].rsplit(" ", 1)[0] + " ..."


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and \
        all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _unwrap(state, depth: int = 0):
    """The state dict inside a checkpoint dict (``state_dict``, ``model``, ...), or None."""
    if _is_state_dict(state):
        return state
    if not isinstance(state, dict) or depth >= 3:
        return None
    for key in CHECKPOINT_KEYS:
        if key in state:
            found = _unwrap(state[key], depth + 1)
            if found is not None:
                return found
    return None


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_state_dict_file(path: str | Path) -> Dict[str, torch.Tensor]:
    """A local state dict, loaded safely (``weights_only=True``).

    Checkpoint wrappers are opened: a dict holding the weights under ``state_dict``,
    ``model``, ``model_state_dict``, ... (next to an optimizer, an epoch, argparse args), and
    ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) key prefixes. Anything else
    is refused with one line naming the file.
    """
    path = check_weights_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4"
            with torch.serialization.safe_globals(_safe_globals()):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _load_error(path, e) from None
    found = _unwrap(state)
    if found is None:
        if isinstance(state, dict):
            keys = ", ".join(str(k) for k in list(state)[:6]) + (", ..." if len(state) > 6 else "")
            raise NdcoreError(f"{path}: holds a dict (keys {keys}) with no state dict in it "
                              f"(looked under {', '.join(CHECKPOINT_KEYS[:4])}, ...)")
        raise NdcoreError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {_strip_prefixes(k): v for k, v in found.items()}


def _fit_prefix(state: Dict[str, torch.Tensor], module: nn.Module) -> Dict[str, torch.Tensor]:
    """Drop a first key component shared by every key (``model.``, ``backbone.``, ...) when
    that, and only that, makes the keys those of ``module``."""
    own = set(module.state_dict())
    if set(state) == own:
        return state
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) == 1 and all("." in k for k in state):
        stripped = {_strip_prefixes(k.split(".", 1)[1]): v for k, v in state.items()}
        if set(stripped) == own:
            return stripped
    return state


def _misfit(state: Dict[str, torch.Tensor], module: nn.Module) -> str:
    """A short account of how a state dict differs from a module's."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {k}: file "
                     f"{list(state[k].shape)}, model {list(own[k].shape)})")
    return "; ".join(parts)


def apply_weights(module: nn.Module, request: ModelRequest, spec: str) -> Optional[str]:
    """Load ``request.weights`` into ``module``; returns its sha256. Random init only if asked.

    The file's sha256 is checked first, against ``request.weights_sha256`` or the hash prefix
    its name carries (``resnet18-f37072fd.pth``), as torch.hub does."""
    if request.weights:
        digest = check_weights_file(request.weights, request.weights_sha256)
        state = _fit_prefix(load_state_dict_file(request.weights), module)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            why = _misfit(state, module) or " ".join(str(e).strip().splitlines()[:2])[:300]
            raise NdcoreError(f"{request.weights}: does not fit {spec}: {why}") from None
        return digest
    if not request.random_init:
        raise NdcoreError(
            f"{spec}: no --weights given; pass a local state dict with --weights FILE, "
            "or --random-init to dissect randomly initialised weights"
        )
    request.randomised = True
    warnings.warn(random_init_caveat(spec), stacklevel=2)
    return None


def check_model_adapter(adapter: Any) -> Optional[str]:
    """A model factory's result must be a ModelAdapter around an nn.Module."""
    if not isinstance(adapter, ModelAdapter):
        hint = " (wrap it: ModelAdapter(spec, module))" if isinstance(adapter, nn.Module) else ""
        return f"returned {type(adapter).__name__}, not a ndcore.plugin_api.ModelAdapter{hint}"
    if not isinstance(adapter.spec, str) or not adapter.spec:
        return f"returned a ModelAdapter whose spec is {adapter.spec!r}, not a non-empty string"
    if not isinstance(adapter.module, nn.Module):
        return f"returned a ModelAdapter whose module is {type(adapter.module).__name__}, not an nn.Module"
    if not isinstance(adapter.preprocess, Preprocess):
        return (f"returned a ModelAdapter whose preprocess is {type(adapter.preprocess).__name__}, not a "
                "ndcore.plugin_api.Preprocess")
    size = adapter.input_size
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)):
        return f"returned a ModelAdapter whose input_size is {size!r}, not (height, width)"
    return None
