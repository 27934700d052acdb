"""Benchmark of the fused tally op at ResNet layer shapes against pure-PyTorch/numpy formulations.

Inputs mimic a Broden pass: label maps 112x112 with 4 planes of piecewise-constant regions
(Voronoi cells of a few labels per image; the part and material planes are mostly 0) over
~1,200 labels; spatially smooth ReLU activations; thresholds at each unit's 99.5th percentile.

    python benchmarks/bench_tally.py --device cpu --threads 2 [--quick]
    python benchmarks/bench_tally.py --device cuda --quick

Methods: `reference` (ndcore.ops.tally_reference), `torch-bincount` (the fastest pure-PyTorch
formulation we have: upsample, threshold, then bincount of the (unit, label) pairs of the hot
pixels), `numpy-loop` (per image, per unit, as NetDissect-Lite does; small layers, a few images,
for context), `ndcore` (the compiled op). Results go to stdout and to benchmarks/RESULTS.md (the
section of this benchmark and device is rewritten).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ndcore.ops import extension_info, tally_reference, upsample_bilinear  # noqa: E402
from results_file import RESULTS, update_results  # noqa: E402

LABEL_SIZE = 112
NUM_LABELS = 1200
NUM_CATEGORIES = 6
# (units, map size): ResNet-18/50 layer shapes at 224x224 input.
LAYERS = [(512, 7), (256, 14), (64, 56), (2048, 7)]
# Label range, number of regions, and fraction of unlabelled regions per plane.
PLANES = [(1, 600, 6, 0.1), (601, 900, 4, 0.8), (901, 1100, 3, 0.6), (1101, 1199, 5, 0.0)]


@dataclass
class Case:
    acts: torch.Tensor
    thresholds: torch.Tensor
    labels: torch.Tensor
    label_category: torch.Tensor

    def args(self) -> tuple:
        return (self.acts, self.thresholds, self.labels, self.label_category, NUM_LABELS,
                NUM_CATEGORIES)


def smooth_relu_acts(n: int, units: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Blurred Gaussian noise, shifted and rectified: smooth blobs, about half the values 0."""
    noise = torch.randn(n * units, 1, size + 4, size + 4, generator=g)
    kernel = torch.outer(*(2 * [torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16]))
    blurred = F.conv2d(noise, kernel.view(1, 1, 5, 5)).view(n, units, size, size)
    scale = torch.rand(1, units, 1, 1, generator=g) * 2 + 0.1
    return (blurred * scale).relu().contiguous()


def voronoi_plane(n: int, lo: int, hi: int, regions: int, empty: float,
                  g: torch.Generator) -> torch.Tensor:
    """[n, S, S] int32 maps: Voronoi cells of random seeds, each cell one label (or 0)."""
    ys, xs = torch.meshgrid(torch.arange(LABEL_SIZE), torch.arange(LABEL_SIZE), indexing="ij")
    pix = torch.stack([ys, xs], -1).view(-1, 2).float()
    seeds = torch.rand(n, regions, 2, generator=g) * LABEL_SIZE
    cell = torch.cdist(pix.expand(n, -1, -1), seeds).argmin(-1)  # [n, S*S]
    region_labels = torch.randint(lo, hi + 1, (n, regions), generator=g)
    region_labels[torch.rand(n, regions, generator=g) < empty] = 0
    return region_labels.gather(1, cell).view(n, LABEL_SIZE, LABEL_SIZE).int()


def make_case(n: int, units: int, size: int, device: str, seed: int = 0) -> Case:
    g = torch.Generator().manual_seed(seed)
    acts = smooth_relu_acts(n, units, size, g)
    flat = acts.transpose(0, 1).reshape(units, -1)
    k = max(1, int(round(0.995 * flat.shape[1])))
    thresholds = flat.kthvalue(k, dim=1).values.contiguous()
    labels = torch.stack([voronoi_plane(n, *plane, g) for plane in PLANES], 1).contiguous()
    cats = torch.randint(0, NUM_CATEGORIES, (NUM_LABELS,), generator=g)
    cats[0] = -1
    return Case(*(t.to(device) for t in (acts, thresholds, labels, cats)))


# ---------------------------------------------------------------------------- methods


def torch_bincount(acts, thresholds, labels, label_category, num_labels, num_categories,
                   chunk: int = 4):
    """Pure PyTorch, vectorised: exact masks per chunk of images, then bincounts of hot pixels."""
    n_img, n_units = acts.shape[:2]
    planes, sh, sw = labels.shape[1:]
    dev = acts.device
    inter = torch.zeros(n_units * num_labels, dtype=torch.int64, device=dev)
    area = torch.zeros(n_img, n_units, dtype=torch.int64, device=dev)
    cat_hits = torch.zeros(n_img * n_units * num_categories, dtype=torch.int64, device=dev)
    for start in range(0, n_img, chunk):
        stop = min(n_img, start + chunk)
        mask = upsample_bilinear(acts[start:stop], (sh, sw)) > thresholds.view(1, -1, 1, 1)
        mask = mask.view(stop - start, n_units, sh * sw)
        area[start:stop] = mask.sum(2)
        img, unit, pix = mask.nonzero(as_tuple=True)
        lab = labels[start:stop].view(stop - start, planes, sh * sw)[img, :, pix]  # [hot, P]
        keep = lab > 0
        unit_rep = unit.view(-1, 1).expand_as(lab)
        inter += torch.bincount((unit_rep * num_labels + lab)[keep], minlength=inter.numel())
        if num_categories:
            cat = label_category[lab]
            ok = keep & (cat >= 0)
            owner = ((img + start) * n_units + unit).view(-1, 1).expand_as(lab)
            cat_hits += torch.bincount((owner * num_categories + cat)[ok],
                                       minlength=cat_hits.numel())
    inter = inter.view(n_units, num_labels)
    inter[:, 0] = 0
    return inter, area, cat_hits.view(n_img, n_units, num_categories)


def numpy_loop(acts, thresholds, labels, label_category, num_labels, num_categories):
    """Per image and unit, as NetDissect-Lite: skip empty maps, upsample, mask, bincount."""
    acts_np, thr = acts.cpu().numpy(), thresholds.cpu().numpy()
    labels_np, cats = labels.cpu().numpy(), label_category.cpu().numpy()
    n_img, n_units = acts_np.shape[:2]
    size = labels_np.shape[2:]
    inter = np.zeros((n_units, num_labels), np.int64)
    area = np.zeros((n_img, n_units), np.int64)
    cat_hits = np.zeros((n_img, n_units, num_categories), np.int64)
    for n in range(n_img):
        for u in range(n_units):
            if acts_np[n, u].max() <= thr[u]:
                continue
            up = upsample_bilinear(torch.from_numpy(acts_np[n, u][None, None]), size)[0, 0]
            mask = up.numpy() > thr[u]
            area[n, u] = mask.sum()
            hit = labels_np[n][:, mask].ravel()
            hit = hit[hit > 0]
            inter[u] += np.bincount(hit, minlength=num_labels)
            c = cats[hit]
            if num_categories:
                cat_hits[n, u] += np.bincount(c[c >= 0], minlength=num_categories)
    return tuple(torch.from_numpy(x) for x in (inter, area, cat_hits))


def ndcore_op(*args):
    return torch.ops.ndcore.tally(*args)


# ---------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable, args: tuple, device: str, repeats: int,
                   budget_s: float) -> Tuple[float, tuple]:
    """Median wall time of fn(*args), and its output. The first call is a warm-up unless it is
    slow (> 1 s, then it counts); repeats stop early once `budget_s` is spent."""
    times: List[float] = []
    warmed = False
    while len(times) < repeats and sum(times) <= budget_s:
        start = time.perf_counter()
        out = fn(*args)
        sync(device)
        elapsed = time.perf_counter() - start
        if warmed or elapsed > 1.0:
            times.append(elapsed)
        warmed = True
    return statistics.median(times), out


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


@dataclass
class Row:
    layer: str
    method: str
    images_per_s: float
    median_ms: float
    vs_reference: Optional[float]
    exact: bool


def bench_layer(units: int, size: int, n: int, device: str, repeats: int, budget_s: float,
                loop_images: int) -> List[Row]:
    case = make_case(n, units, size, device)
    layer = f"{units}u {size}x{size}"
    methods: Dict[str, Callable] = {"reference": tally_reference, "torch-bincount": torch_bincount}
    if extension_info()["loaded"]:
        methods["ndcore"] = ndcore_op
    rows: List[Row] = []
    ref_out: tuple = ()
    ref_rate = 1.0
    for name, fn in methods.items():
        t, out = median_seconds(fn, case.args(), device, repeats, budget_s)
        if name == "reference":
            ref_out, ref_rate = out, n / t
        rows.append(Row(layer, name, n / t, t * 1e3, n / t / ref_rate, same(out, ref_out)))
    if loop_images and units * size * size <= 512 * 14 * 14:
        # Same thresholds as the batch: they are the 99.5th percentile of the whole batch.
        sub = Case(case.acts[:loop_images].cpu(), case.thresholds.cpu(),
                   case.labels[:loop_images].cpu(), case.label_category.cpu())
        t, out = median_seconds(numpy_loop, sub.args(), "cpu", 1, budget_s)
        rate = loop_images / t
        rows.append(Row(layer, "numpy-loop", rate, t * 1e3 * n / loop_images, rate / ref_rate,
                        same(out, tally_reference(*sub.args()))))
    return rows


# ---------------------------------------------------------------------------- report


def context_note() -> str:
    """What the shared machine line of results_file leaves out."""
    info = extension_info()
    note = (f"ndcore._C loaded={info['loaded']} cuda={info['cuda']} openmp={info['openmp']}")
    if hasattr(os, "getloadavg"):  # other work on the machine skews multi-threaded timings
        note += f"; load average {os.getloadavg()[0]:.1f} at the end"
    return note


def format_table(rows: List[Row], n: int) -> str:
    lines = [
        f"| layer ({n} images/batch) | method | images/s | median ms/batch | vs reference | exact |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r.vs_reference:.1f}x" if r.vs_reference is not None else "-"
        lines.append(f"| {r.layer} | {r.method} | {r.images_per_s:,.1f} | {r.median_ms:,.1f} | "
                     f"{ratio} | {'yes' if r.exact else 'NO'} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="small batches, fewer repeats")
    ap.add_argument("--images", type=int, default=None, help="images per batch")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    n = args.images or (8 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 5)
    loop_images = 1 if args.quick else 2
    budget_s = 10.0 if args.quick else 60.0  # per method and layer; the reference is slow

    rows: List[Row] = []
    for units, size in LAYERS:
        layer_rows = bench_layer(units, size, n, args.device, repeats, budget_s,
                                 loop_images if args.device == "cpu" else 0)
        for r in layer_rows:
            print(f"{r.layer:>14} {r.method:>15} {r.images_per_s:10.1f} img/s "
                  f"{r.vs_reference:7.1f}x  exact={r.exact}", flush=True)
        rows += layer_rows

    command = "python benchmarks/bench_tally.py " + " ".join(sys.argv[1:] if argv is None else argv)
    where = args.device if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    note = (f"{context_note()}; medians over {repeats} repeats; label maps "
            f"{LABEL_SIZE}x{LABEL_SIZE}, {len(PLANES)} planes, {NUM_LABELS} labels, thresholds at "
            f"the 99.5th percentile; numpy-loop timed on {loop_images} image(s). `exact` compares "
            f"with the reference; numpy-loop can be inexact because, like NetDissect-Lite, it "
            f"skips maps whose max is <= the threshold, yet a float32 bilinear value can round "
            f"above a map max equal to the threshold.")
    table = format_table(rows, n)
    print()
    print(table)
    if not args.no_write:
        update_results(f"bench_tally ({where})", command.strip(), table, note, args.device)
        print(f"\nupdated {RESULTS}")
    # numpy-loop's inexactness is expected (see the note); the others must be exact.
    return 0 if all(r.exact for r in rows if r.method != "numpy-loop") else 1


if __name__ == "__main__":
    sys.exit(main())
