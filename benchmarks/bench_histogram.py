"""Benchmark of the iou_histogram op (GAN Dissection's per-(unit, concept) threshold histograms)
against its pure-PyTorch reference.

Inputs mimic a GAN layer dissected against a segmenter: 512 units of 8x8 maps upsampled to 64x64
segmentations with one plane of 12 labels (Voronoi regions, some unlabelled), smooth ReLU
activations, and 256 edges per unit at quantiles of the unit's values from the median up.

    python benchmarks/bench_histogram.py --device cpu --threads 2 [--quick]
    python benchmarks/bench_histogram.py --device cuda --quick

Prints the op/reference speed ratio and whether the counts are identical; the section of this
benchmark and device in benchmarks/RESULTS.md is rewritten (unless --no-write).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tally import context_note, median_seconds, smooth_relu_acts  # noqa: E402
from ndcore.ops import extension_info, iou_histogram_reference  # noqa: E402
from results_file import RESULTS, update_results  # noqa: E402


def voronoi_labels(n: int, size: int, num_labels: int, regions: int,
                   g: torch.Generator) -> torch.Tensor:
    """[n, 1, size, size] int32: Voronoi cells of random seeds, each one label (0 = none)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pix = torch.stack([ys, xs], -1).view(-1, 2).float()
    seeds = torch.rand(n, regions, 2, generator=g) * size
    cell = torch.cdist(pix.expand(n, -1, -1), seeds).argmin(-1)
    region_labels = torch.randint(0, num_labels, (n, regions), generator=g)
    return region_labels.gather(1, cell).view(n, 1, size, size).int().contiguous()


def quantile_edges(acts: torch.Tensor, n_edges: int, low: float, high: float) -> torch.Tensor:
    """[U, B] edges at quantile levels low..high of each unit's values, ties moved up to the
    next float so that every row is strictly increasing (as the op requires)."""
    units = acts.shape[1]
    flat = acts.transpose(0, 1).reshape(units, -1)
    levels = torch.linspace(low, high, n_edges)
    edges = torch.quantile(flat, levels, dim=1).T.contiguous()
    for k in range(1, n_edges):
        edges[:, k] = torch.maximum(edges[:, k],
                                    torch.nextafter(edges[:, k - 1], torch.tensor(float("inf"))))
    return edges


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    ap.add_argument("--images", type=int, default=None, help="images per batch")
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--map-size", type=int, default=8)
    ap.add_argument("--label-size", type=int, default=64)
    ap.add_argument("--labels", type=int, default=12, help="num_labels, label 0 included")
    ap.add_argument("--edges", type=int, default=256)
    ap.add_argument("--low-quantile", type=float, default=0.5, help="level of the lowest edge")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    if not extension_info()["loaded"]:
        ap.error(f"the compiled extension is not loaded: {extension_info()['error']}")
    n = args.images or (8 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 7)
    budget_s = 20.0 if args.quick else 60.0

    g = torch.Generator().manual_seed(0)
    acts = smooth_relu_acts(n, args.units, args.map_size, g)
    edges = quantile_edges(acts, args.edges, args.low_quantile, 0.999)
    labels = voronoi_labels(n, args.label_size, args.labels, 8, g)
    case = tuple(t.to(args.device) for t in (acts, edges, labels)) + (args.labels,)

    t_ref, want = median_seconds(iou_histogram_reference, case, args.device, repeats, budget_s)
    t_op, got = median_seconds(torch.ops.ndcore.iou_histogram, case, args.device, repeats,
                               budget_s)
    exact = torch.equal(got.cpu(), want.cpu())
    shape = (f"{args.units}u {args.map_size}x{args.map_size} -> "
             f"{args.label_size}x{args.label_size}, {args.labels} labels, {args.edges} edges")
    table = "\n".join([
        f"| problem ({n} images/batch) | method | images/s | median ms/batch | vs reference | exact |",
        "|---|---|---:|---:|---:|---|",
        f"| {shape} | reference | {n / t_ref:,.1f} | {t_ref * 1e3:,.1f} | 1.0x | yes |",
        f"| {shape} | ndcore | {n / t_op:,.1f} | {t_op * 1e3:,.1f} | {t_ref / t_op:,.1f}x | "
        f"{'yes' if exact else 'NO'} |",
    ])
    print(table)
    print(f"ratio op/reference speed: {t_ref / t_op:.1f}x  exact={exact}")
    counted = float(got[:, 0].sum()) / (n * args.units * args.label_size ** 2)
    note = (f"{context_note()}; medians over up to {repeats} repeats; edges at quantile levels "
            f"{args.low_quantile}..0.999 of each unit's low-res values ({counted:.0%} of the "
            f"(pixel, unit) pairs are above the lowest edge); one label plane (Voronoi regions).")
    if not args.no_write:
        command = "python benchmarks/bench_histogram.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        where = args.device if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        update_results(f"bench_histogram ({where})", command.strip(), table, note, args.device)
        print(f"updated {RESULTS}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
