"""What the chance and confidence statistics show on the built-in probe world.

Dissects, with the defaults (null 8 permutations, bootstrap 20, FDR 5%), the demo CNN's five
layers, its random-init twin (same architecture, no training), a planted case (a model whose
first 11 units fire on exactly one colour name each and whose other units are noise), and the
demo CNN's conv5 under random rotations. Prints a Markdown table: detectors at the 0.04
cut-off against significant detectors at FDR 5%, stable labels, and unique detectors against
alpha. docs/chance-and-confidence.md holds its output.

    python examples/chance_and_confidence.py [--images 1000] [--out /tmp/ndcore-chance]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ndcore
from ndcore.data.colors import COLOR_NAMES, color_name_of_rgb
from ndcore.models import ModelAdapter, Preprocess

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


class PlantedColours(nn.Module):
    """Units 0-10 are colour-name indicators (``COLOR_NAMES`` order), 4x4 average pooled; the
    other ``noise_units`` are noise independent of the image (one seeded generator, so pass 2
    reads the kept maps)."""

    def __init__(self, noise_units: int = 117) -> None:
        super().__init__()
        self.noise_units = noise_units
        self.generator = torch.Generator().manual_seed(0)
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()
        names = torch.as_tensor(color_name_of_rgb(rgb).astype(np.int64))
        onehot = nn.functional.one_hot(names, len(COLOR_NAMES)).permute(0, 3, 1, 2).float()
        colours = nn.functional.avg_pool2d(onehot, 4)
        noise = torch.randn(x.shape[0], self.noise_units, *colours.shape[-2:],
                            generator=self.generator)
        # a thousandth of noise breaks the ties of cells wholly of one colour
        return self.units(torch.cat([colours + 1e-3 * noise[:, :len(COLOR_NAMES)], noise], 1))


def rows_of(name: str, result) -> list:
    rows = []
    for layer, lr in result.layers.items():
        s = lr.summary()
        rows.append((name, layer, s["units"], s["detectors"], s["unique_detectors"],
                     s.get("detectors_fdr", "-"), s.get("stable_labels", "-")))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--out", default="/tmp/ndcore-chance")
    args = p.parse_args()
    out = Path(args.out)
    common = dict(max_images=args.images, batch_size=50, overwrite=True)
    layers = "conv1,conv2,conv3,conv4,conv5"
    start = time.time()
    rows = rows_of("demo CNN", ndcore.dissect("demo", layers, "synthetic", out / "demo",
                                              **common))
    rows += rows_of("random-init twin", ndcore.dissect("demo", layers, "synthetic",
                                                      out / "random", random_init=True,
                                                      **common))
    planted = ndcore.dissect(ModelAdapter("planted", PlantedColours(),
                                          Preprocess((0, 0, 0), (255, 255, 255))),
                             "units", "synthetic", out / "planted", second_pass="cache",
                             **common)
    rows += rows_of("planted (11 colour + 117 noise units)", planted)
    print("| model | layer | units | detectors (IoU > 0.04) | unique | significant "
          "(FDR 5%) | stable labels |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")

    units = planted["units"].units
    colour = [u for u in units[:len(COLOR_NAMES)]]
    noise = units[len(COLOR_NAMES):]
    print(f"\nplanted: {sum(u.stats['significant'] for u in colour)}/{len(colour)} colour units "
          f"significant, {sum(u.label == COLOR_NAMES[u.unit] for u in colour)} labelled with "
          f"their colour; {sum(u.stats['significant'] for u in noise)}/{len(noise)} noise "
          "units significant")
    print("\n| unit | planted colour | label | IoU | 95% interval | stability | p-value | "
          "chance reaches |")
    print("|---:|---|---|---:|---|---:|---:|---:|")
    for u in colour:
        ci = u.stats["iou_ci"]
        interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
        reach = u.stats["null_iou95"]
        print(f"| {u.unit} | {COLOR_NAMES[u.unit]} | {u.label or '-'} | {u.iou:.3f} | "
              f"{interval} | {u.stats['label_stability']:.2f} | {u.stats['p_value']:.2g} | "
              f"{reach:.3f} |" if reach is not None else f"| {u.unit} | - | - | - | - | - | - |")

    rotated = ndcore.dissect("demo", "conv5", "synthetic", out / "rotated", rotate=["conv5"],
                             rotate_alpha=ALPHAS, **common)
    print("\n| conv5 rotated, alpha | detectors | unique detectors | significant (FDR 5%) |")
    print("|---:|---:|---:|---:|")
    for alpha in ALPHAS:
        name = f"conv5@rot{alpha:g}"
        s = rotated[name].summary()
        print(f"| {alpha:g} | {s['detectors']} | {s['unique_detectors']} | "
              f"{s.get('detectors_fdr', '-')} |")
    print(f"\n({args.images} probe images; {time.time() - start:.0f} s on "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
