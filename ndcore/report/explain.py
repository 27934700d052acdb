"""Segment one image with a layer's detector units: which concepts does the layer see here?

The model is rebuilt from the run's config.json (spec, weights, preprocessing), the image is
brought to the probe images' size, and each detector unit's mask is the method's: the
bilinearly upsampled map compared (strictly) with the unit's saved threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..capture import LayerCapture
from ..errors import LayerError, NdcoreError, suggest
from ..models import ModelAdapter
from ..ops.reference import unit_masks, upsample_bilinear
from ..results import DissectionResult
from ..specs import rebuild_model
from ..results.images import load_image_list
from .common import check_positive, layer_slugs

Explanation = Tuple[int, str, str, float, float]  # unit, label, category, IoU, share of image

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
MIN_DRAW_SIDE = 384  # small probe images are enlarged so that labels stay legible


def probe_size(run_dir: Path) -> Optional[Tuple[int, int]]:
    """(width, height) of the run's first probe image, if it can still be read."""
    paths = load_image_list(run_dir)
    if not paths or not paths[0]:
        return None
    try:
        with Image.open(paths[0]) as im:
            return im.size
    except OSError:
        return None


def load_image(path, size: Optional[Tuple[int, int]]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size and im.size != tuple(size):
                im = im.resize(size, Image.BILINEAR)
            return np.array(im)  # a writable copy (torch.from_numpy needs one)
    except FileNotFoundError:
        raise NdcoreError(f"{path}: image not found") from None
    except OSError as e:
        raise NdcoreError(f"{path}: cannot read the image ({e})") from None


def layer_activations(adapter: ModelAdapter, layer: str, image: np.ndarray,
                      device: str = "cpu") -> torch.Tensor:
    """The layer's maps [U, h, w] (float32, CPU) on one uint8 [H, W, 3] image."""
    module = adapter.module.eval().to(device)
    x = adapter.preprocess(torch.from_numpy(image).permute(2, 0, 1)[None].to(device))
    with torch.no_grad(), LayerCapture(module, [layer]) as capture:
        return capture(x)[layer][0].float().cpu()


def _masks(acts: torch.Tensor, thresholds: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """bool [U, H, W]: the method's masks of maps [U, h, w] at ``size``."""
    t = torch.from_numpy(np.asarray(thresholds, np.float32))
    return unit_masks(acts[None], t, size, crossing_only=True)[0].numpy()


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it, thickened by one pixel."""
    padded = np.pad(mask, 1)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    edge = mask & ~interior
    thick = np.pad(edge, 1)
    return edge | thick[:-2, 1:-1] | thick[2:, 1:-1] | thick[1:-1, :-2] | thick[1:-1, 2:]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single bitmap font
        return ImageFont.load_default()


def draw_explanation(image: np.ndarray, acts: torch.Tensor, thresholds: np.ndarray,
                     found: List[Explanation]) -> Image.Image:
    """The image with each unit's mask tinted and outlined, its label at the unit's peak, and a
    legend underneath. Masks are recomputed at the drawing's size, so enlarged small images get
    smooth outlines rather than blocks."""
    h, w = image.shape[:2]
    scale = max(1, int(np.ceil(MIN_DRAW_SIDE / min(h, w))))
    H, W = h * scale, w * scale
    canvas = np.asarray(Image.fromarray(image).resize((W, H), Image.BILINEAR), dtype=np.float32)
    units = [u for u, *_ in found]
    masks = _masks(acts[units], np.asarray(thresholds)[units], (H, W))
    maps = upsample_bilinear(acts[units][None], (H, W))[0].numpy()  # to tag each unit's peak
    for mask, color in zip(masks, PALETTE * 10):
        canvas[mask] = 0.65 * canvas[mask] + 0.35 * np.array(color, np.float32)
        canvas[_outline(mask)] = color
    font = _font(14)
    line_h = 20
    out = Image.new("RGB", (W, H + 8 + line_h * max(len(found), 1)), "white")
    out.paste(Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(out)
    for (unit, label, *_), mask, act, color in zip(found, masks, maps, PALETTE * 10):
        if not mask.any():
            continue
        y, x = divmod(int(np.where(mask, act, -np.inf).argmax()), W)  # tag at the unit's peak
        text = label or f"unit {unit}"
        box = draw.textbbox((x, y), text, font=font)
        dx = min(0, W - box[2] - 2) - min(0, box[0] - 2)  # keep the tag on the image
        dy = min(0, H - box[3] - 2)
        box = (box[0] + dx - 2, box[1] + dy - 2, box[2] + dx + 2, box[3] + dy + 2)
        draw.rectangle(box, fill=(0, 0, 0), outline=color)
        draw.text((x + dx, y + dy), text, fill=color, font=font)
    y = H + 6
    if not found:
        draw.text((6, y), "no detector unit is active on this image", fill=(0, 0, 0), font=font)
    for (unit, label, cat, iou, share), color in zip(found, PALETTE * 10):
        draw.rectangle((6, y + 2, 20, y + 16), fill=color)
        draw.text((26, y), f"unit {unit}: {label} ({cat}), IoU {iou:.3f}, "
                           f"{100 * share:.1f}% of the image", fill=(0, 0, 0), font=font)
        y += line_h
    return out


def explain_image(run_dir, image_path, layer: Optional[str] = None, top: int = 5, out=None,
                  device: str = "cpu", model: Optional[ModelAdapter] = None
                  ) -> Tuple[Path, List[Explanation]]:
    """Draw the ``top`` detector units of ``layer`` that cover most of the image.

    Returns the PNG path (default ``run_dir/explain/<image>-<layer>.png``) and, per unit drawn,
    (unit, label, category, IoU, share of the image inside its mask). ``model`` overrides the
    model rebuilt from config.json (for models that no spec can build).
    """
    check_positive("top", top)
    run_dir = Path(run_dir)
    result = DissectionResult.load(run_dir)
    layers = list(result.layers)
    layer = layer or layers[-1]
    if layer not in result.layers:
        raise LayerError(f"the run has no layer {layer!r}{suggest(layer, layers)}; "
                         f"it has {', '.join(layers)}")
    lr = result.layers[layer]
    image = load_image(image_path, probe_size(run_dir))
    adapter = model or rebuild_model(result.config)
    acts = layer_activations(adapter, layer, image, device)
    if acts.shape[0] != len(lr.thresholds):
        raise NdcoreError(f"layer {layer!r} has {acts.shape[0]} units now but the run saved "
                          f"{len(lr.thresholds)} thresholds: the model is not the one dissected")
    masks = _masks(acts, lr.thresholds, image.shape[:2])
    share = masks.reshape(masks.shape[0], -1).mean(1)
    detectors = [u for u in lr.detectors() if share[u.unit] > 0]
    detectors.sort(key=lambda u: (-share[u.unit], -u.iou, u.unit))
    found = [(u.unit, u.label, u.category, u.iou, float(share[u.unit])) for u in detectors[:top]]
    picture = draw_explanation(image, acts, lr.thresholds, found)
    if out is None:
        out = run_dir / "explain" / f"{Path(image_path).stem}-{layer_slugs([layer])[layer]}.png"
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(out, format="PNG")
    except (OSError, ValueError) as e:
        raise NdcoreError(f"{out}: cannot write the picture ({e})") from None
    return out, found
