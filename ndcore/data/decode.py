"""Decoding probe images and label PNGs.

``torchvision.io`` (libjpeg-turbo and libpng, without PIL's per-image object overhead) decodes
the common case: baseline or progressive JPEGs with 1 or 3 components, and 8-bit PNGs. Every
other file, and any file that ``torchvision.io`` fails on, goes to PIL, so that what a file
decodes to and the errors it raises stay PIL's (``benchmarks/bench_decode.py`` measures both,
and ``tests/test_decode.py`` checks that they agree pixel for pixel).

``NDCORE_DECODE=pil`` forces PIL everywhere (``torchvision`` forces torchvision.io where it
applies; ``auto``, the default, is the same as ``torchvision``).

On a GPU, :func:`decode_jpegs_on_device` decodes a batch of JPEG files with nvJPEG, straight
into device memory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (C0-CF, except DHT C4, JPG C8 and DAC CC) carry the component count.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def backend() -> str:
    value = os.environ.get("NDCORE_DECODE", "auto").strip().lower()
    return value if value in ("pil", "torchvision") else "auto"


def _tvio():
    try:
        import torchvision.io as tvio
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return tvio


class _Quiet(warnings.catch_warnings):
    """torchvision 0.29 warns at every call that TorchCodec supersedes its image decoders;
    PIL stays the fallback for the day they are removed."""

    def __enter__(self):
        super().__enter__()
        warnings.simplefilter("ignore", DeprecationWarning)


def _read(path) -> Optional[np.ndarray]:
    """The file's bytes (uint8), or None when it cannot be read (PIL then names the problem)."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except Exception:
        return None


def jpeg_components(data: bytes | np.ndarray) -> Optional[int]:
    """Number of colour components in a JPEG's frame header (None if none is found)."""
    buf = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data
    n, i = len(buf), 2
    while i + 4 <= n:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = (int(buf[i + 2]) << 8) | int(buf[i + 3])
        if marker in _SOF:
            return int(buf[i + 9]) if i + 9 < n else None
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _pil_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an image file, as ``np.asarray(Image.open(path).convert("RGB"))``
    gives it (may be a non-contiguous view); PIL's exceptions for files it cannot read."""
    tvio = _tvio() if backend() != "pil" else None
    raw = _read(path) if tvio is not None else None
    if raw is not None and raw.size > 8:
        head = raw[:8].tobytes()
        image = None
        try:
            with _Quiet():
                if head.startswith(_JPEG_MAGIC) and jpeg_components(raw) in (1, 3):
                    image = tvio.decode_jpeg(torch.from_numpy(raw), mode=tvio.ImageReadMode.RGB)
                elif head == _PNG_MAGIC:
                    image = tvio.decode_png(torch.from_numpy(raw), mode=tvio.ImageReadMode.RGB)
        except Exception:
            image = None  # PIL decides (and names the problem)
        if image is not None and image.dtype == torch.uint8:
            return image.permute(1, 2, 0).numpy()
    return _pil_rgb(path)


def read_label_png(path: str | Path) -> np.ndarray:
    """int32 [H, W] label numbers of a Broden label plane (R + 256 * G; B unused)."""
    tvio = _tvio() if backend() != "pil" else None
    raw = _read(path) if tvio is not None else None
    rgb = None
    if raw is not None and raw.size > 8 and raw[:8].tobytes() == _PNG_MAGIC:
        try:
            with _Quiet():
                decoded = tvio.decode_png(torch.from_numpy(raw), mode=tvio.ImageReadMode.RGB)
            if decoded.dtype == torch.uint8:
                rgb = decoded.numpy()  # [3, H, W]
        except Exception:
            rgb = None
    if rgb is None:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    plane = rgb[1].astype(np.int32)
    plane <<= 8
    plane += rgb[0]
    return plane


def decode_jpegs_on_device(paths: Sequence[str | Path],
                           device: torch.device | str) -> List[torch.Tensor]:
    """uint8 [3, H, W] tensors on ``device`` (CUDA: nvJPEG, one batched call), RGB."""
    tvio = _tvio()
    device = torch.device(device)
    with _Quiet():
        datas = [tvio.read_file(str(p)) for p in paths]
        if device.type != "cuda":
            return [tvio.decode_jpeg(d, mode=tvio.ImageReadMode.RGB) for d in datas]
        return list(tvio.decode_jpeg(datas, mode=tvio.ImageReadMode.RGB, device=device))
