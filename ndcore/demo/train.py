"""Train DemoNet on synthetic images rendered in memory.

    python -m ndcore.demo.train --out ndcore/demo/demo_weights.pt

Reproducible (fixed seeds, 2 CPU threads, deterministic algorithms): the same command gives the
same weights on the same software stack. The training images come from seed 1234, the validation
images from seed 4321; both differ from the probe set's seed (0), so dissection never looks at
training images. About 4 minutes on 2 idle CPU cores (12 epochs of 3000 images; longer when the
cores are shared). Validation accuracy: scene (24-way) ~0.99, object and colour presence ~0.95.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ndcore.data.synthetic import COLOR_NAMES, LABEL_ID, OBJECTS, SCENES, render_sample
from ndcore.demo.model import DEMO_INPUT_SIZE, WEIGHTS_PATH, DemoNet, preprocess

TRAIN_SEED, VAL_SEED = 1234, 4321
# A colour counts as present when it covers this fraction of the image: tiny specks of a colour
# (noise, JPEG-like fringes) should not be a target.
COLOR_PRESENT = 0.03
# Scenes (24 backgrounds) are learnt in an epoch or two; object shapes are the hard task, so their
# loss weighs more.
LOSS_WEIGHTS = (1.0, 3.0, 1.0)  # scene, object, color


@dataclass
class TaskData:
    """Rendered images (uint8 ``[N, H, W, 3]``) and their targets."""

    images: torch.Tensor
    scene: torch.Tensor  # [N] int64
    objects: torch.Tensor  # [N, 4] float 0/1
    colors: torch.Tensor  # [N, 11] float 0/1

    def __len__(self) -> int:
        return len(self.scene)


def render_task_data(n: int, seed: int, image_size: int = DEMO_INPUT_SIZE) -> TaskData:
    """Render ``n`` synthetic images (seeded) with their scene/object/colour targets."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    scene = np.empty(n, dtype=np.int64)
    objects = np.zeros((n, len(OBJECTS)), dtype=np.float32)
    colors = np.zeros((n, len(COLOR_NAMES)), dtype=np.float32)
    color_ids = [LABEL_ID[name] for name in COLOR_NAMES]
    for i in range(n):
        sample = render_sample(rng, image_size, image_size // 2)
        images[i] = sample.image
        scene[i] = SCENES.index(sample.scene)
        for name in sample.labels("object"):
            objects[i, OBJECTS.index(name)] = 1.0
        plane = sample.planes["color"][0]
        fraction = np.bincount(plane.ravel(), minlength=len(LABEL_ID) + 1) / plane.size
        colors[i] = fraction[color_ids] >= COLOR_PRESENT
    return TaskData(*(torch.from_numpy(a) for a in (images, scene, objects, colors)))


def _losses(model: DemoNet, x: torch.Tensor, data: TaskData, idx: torch.Tensor):
    out = DemoNet.split_logits(model(x))
    scene = F.cross_entropy(out["scene"], data.scene[idx])
    objects = F.binary_cross_entropy_with_logits(out["object"], data.objects[idx])
    colors = F.binary_cross_entropy_with_logits(out["color"], data.colors[idx])
    return scene, objects, colors


@torch.no_grad()
def evaluate(model: DemoNet, data: TaskData, batch_size: int = 200) -> Dict[str, float]:
    """Scene accuracy, and mean per-label accuracy of object and colour presence."""
    model.eval()
    hits = {"scene": 0.0, "object": 0.0, "color": 0.0}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        out = DemoNet.split_logits(model(preprocess(data.images[idx])))
        hits["scene"] += (out["scene"].argmax(1) == data.scene[idx]).float().sum().item()
        hits["object"] += ((out["object"] > 0).float() == data.objects[idx]).float().mean(1).sum().item()
        hits["color"] += ((out["color"] > 0).float() == data.colors[idx]).float().mean(1).sum().item()
    return {k: v / len(data) for k, v in hits.items()}


def train(out: Path, n_train: int = 3000, n_val: int = 300, epochs: int = 12,
          batch_size: int = 64, lr: float = 3e-3, threads: int = 2,
          log=print) -> Dict[str, float]:
    """Train DemoNet and save its float32 state dict to ``out``; returns the final val metrics."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    train_data = render_task_data(n_train, TRAIN_SEED)
    val_data = render_task_data(n_val, VAL_SEED)
    log(f"rendered {n_train} + {n_val} images in {time.time() - t0:.1f}s")

    model = DemoNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(0)
    metrics: Dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        totals = torch.zeros(3)
        for start in range(0, n_train, batch_size):
            idx = order[start:start + batch_size]
            x = preprocess(train_data.images[idx])
            flip = torch.rand(len(idx), generator=gen) < 0.5  # labels are mirror-invariant
            x[flip] = x[flip].flip(-1)
            losses = _losses(model, x, train_data, idx)
            opt.zero_grad(set_to_none=True)
            sum(w * l for w, l in zip(LOSS_WEIGHTS, losses)).backward()
            opt.step()
            sched.step()
            totals += torch.tensor([l.item() for l in losses]) * len(idx)
        totals /= n_train
        metrics = evaluate(model, val_data)
        log(f"epoch {epoch:2d}  loss scene {totals[0]:.3f} object {totals[1]:.3f} "
            f"color {totals[2]:.3f} | val acc scene {metrics['scene']:.3f} "
            f"object {metrics['object']:.3f} color {metrics['color']:.3f} "
            f"({time.time() - t0:.0f}s)")

    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {time.time() - t0:.0f}s")
    return metrics


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    train(args.out, n_train=args.train_images, epochs=args.epochs, threads=args.threads)


if __name__ == "__main__":
    main()
