"""The figures of ndcore's "Dissecting a GAN" section (docs/gan-face-units.png and
docs/gan-ablation.png), from a saved face-parts dissection of dcgan-faces.

    .venv/bin/python plugins/ndcore-mediapipe/examples/gan_figures.py units RUN OUT.png \
        main.8:20:eyes main.8:10:nose ...
    .venv/bin/python plugins/ndcore-mediapipe/examples/gan_figures.py ablation RUN OUT.png \
        --row "main.8:20,80,108,116,103,82,117,62:eyes" --samples 0-7 \
        --row "main.8:70,103,80,24:mouth interior@2,9,19,24"

units: one row per LAYER:UNIT:CONCEPT: the unit's top samples (by its largest activation),
shown as image x (0.25 + 0.75 x the unit's mask), with the segmenter's CONCEPT outlined in
yellow. The mask is the unit's map, upsampled bilinearly, above its threshold for CONCEPT
(the best-IoU threshold in a best-iou run, the unit's quantile threshold otherwise).

ablation: per row, the samples before and after setting the UNITS of LAYER to 0, with the
CONCEPT's share of pixels before and after (over the samples shown). A row's own samples
follow an @ (default: --samples).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

import ndcore
from ndcore.gan.editing import intervene as iv
from ndcore.gan.editing.edits import Ablate

SCALE = 3
GAP = 4
LABEL_W = 150
YELLOW = np.array([255, 225, 0], np.uint8)


def font(size=13):
    return ImageFont.load_default(size=size)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that touch a pixel outside it (4-neighbourhood)."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def concept_mask(seg, images: torch.Tensor, label: int) -> np.ndarray:
    """bool [B, H, W]: where the segmenter puts ``label`` (any plane); valid samples only."""
    s = seg.segment(images)
    m = (s.labels == label).any(1).numpy()
    if s.valid is not None:
        m &= s.valid.numpy()[:, None, None]
    return m


def big(a: np.ndarray) -> np.ndarray:
    return a.repeat(SCALE, 0).repeat(SCALE, 1)


def cell(image: np.ndarray, dim: np.ndarray = None, part: np.ndarray = None) -> np.ndarray:
    """[H, W, 3] uint8 -> enlarged cell; ``dim``: keep-mask (others at 25%); ``part``: a mask
    outlined in yellow (one enlarged pixel wide)."""
    out = image.astype(np.float32)
    if dim is not None:
        out = out * (0.25 + 0.75 * dim[..., None])
    out = big(out.round().clip(0, 255).astype(np.uint8))
    if part is not None:
        out[outline(big(part))] = YELLOW
    return out


def canvas_rows(rows, labels, title=None):
    """Rows of cells side by side, a text label left of each row."""
    h = max(c.shape[0] for r in rows for c in r)
    widths = [sum(c.shape[1] for c in r) + GAP * (len(r) - 1) for r in rows]
    top = 26 if title else 0
    W = LABEL_W + max(widths) + GAP
    H = top + len(rows) * (h + GAP)
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((6, 5), title, fill="black", font=font(14))
    for i, (r, text) in enumerate(zip(rows, labels)):
        y = top + i * (h + GAP)
        draw.multiline_text((6, y + 6), text, fill="black", font=font(13), spacing=3)
        x = LABEL_W
        for c in r:
            img.paste(Image.fromarray(c), (x, y))
            x += c.shape[1] + GAP
    return img


def units_figure(run_dir: Path, specs, out: Path, n: int = 8) -> None:
    run = iv.load_generator_run(run_dir)
    names = run.result.vocabulary.label_names
    rows, labels = [], []
    for spec in specs:
        layer, unit, concept = spec.split(":", 2)
        unit = int(unit)
        lr = run.layer(layer)
        label = names.index(concept)
        best = getattr(lr, "best_thresholds", None)
        t = float(best[unit, label]) if best is not None else float(lr.thresholds[unit])
        idx = [int(i) for i in lr.topk["indices"][unit][:n]]
        maps = torch.from_numpy(lr.topk["maps"][unit][:n].astype(np.float32))[:, None]
        images = iv.generate(run, idx, run.config["dataset"]["seed"])
        size = tuple(images.shape[-2:])
        up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]
        unit_mask = (up > t).numpy()
        parts = concept_mask(run.segmenter, images, label)
        rgb = images.permute(0, 2, 3, 1).numpy()
        rows.append([cell(rgb[k], unit_mask[k], parts[k]) for k in range(len(idx))])
        labels.append(f"{layer}, unit {unit}\n{concept}\nIoU {lr.iou[unit, label]:.3f}")
    rule = "best-IoU" if getattr(run.result[list(run.result.layers)[0]], "best_thresholds",
                                 None) is not None else "quantile"
    title = (f"Top samples of face-part units (dcgan-faces, {rule} thresholds): bright = the "
             f"unit's mask, yellow = the segmenter's part")
    canvas_rows(rows, labels, title).save(out)


def parse_samples(text: str):
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def ablation_figure(run_dir: Path, row_specs, samples, out: Path) -> None:
    run = iv.load_generator_run(run_dir)
    names = run.result.vocabulary.label_names
    seed = run.config["dataset"]["seed"]
    rows, labels = [], []
    default_samples = samples
    for spec in row_specs:
        spec, _, own = spec.partition("@")
        samples = parse_samples(own) if own else default_samples
        layer, units, concept = spec.split(":", 2)
        units = [int(u) for u in units.split(",")]
        label = names.index(concept)
        before = iv.generate(run, samples, seed)
        after = iv.generate(run, samples, seed, {layer: Ablate(units)})
        shares = []
        for images in (before, after):
            m = concept_mask(run.segmenter, images, label)
            shares.append(m.mean())
        for images in (before, after):
            parts = concept_mask(run.segmenter, images, label)
            rgb = images.permute(0, 2, 3, 1).numpy()
            rows.append([cell(rgb[k], None, parts[k]) for k in range(len(samples))])
        labels.append(f"{concept}: before\nshare {shares[0]:.4f}")
        labels.append(f"{len(units)} units of {layer}\nset to 0\nshare {shares[1]:.4f}")
    title = "Ablating face-part units (dcgan-faces): yellow = the segmenter's part"
    canvas_rows(rows, labels, title).save(out)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("units")
    u.add_argument("run", type=Path)
    u.add_argument("out", type=Path)
    u.add_argument("specs", nargs="+", help="LAYER:UNIT:CONCEPT")
    u.add_argument("--n", type=int, default=8)
    a = sub.add_parser("ablation")
    a.add_argument("run", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--row", action="append", required=True,
                   help="LAYER:U1,U2,...:CONCEPT[@SAMPLES]")
    a.add_argument("--samples", default="0-7")
    args = p.parse_args()
    if args.cmd == "units":
        units_figure(args.run, args.specs, args.out, args.n)
    else:
        ablation_figure(args.run, args.row, parse_samples(args.samples), args.out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
