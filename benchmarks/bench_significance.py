"""What chance and confidence cost: a dissection with the null and the bootstrap (defaults) vs
the same dissection without them.

The null's permutations and the bootstrap's resamples (docs/method.md sections 14-15) are more
tallies of the maps each batch already has: no extra forward pass. Reports, in one run, the wall
time of a dissection of ResNet-18's layer1-layer4 with ``--no-null --bootstrap 0`` and with the
defaults (``--null-permutations 8 --bootstrap 20``), and their ratio (target on the CPU: <= 1.5).

The synthetic probe set has few labels (about 60); the statistics' bookkeeping grows with the
labels (per unit and label), so the benchmark also times the accumulators alone on one batch of
Broden's size of vocabulary (1,197 labels, 4 label planes of 112x112): a layer's counts
(``TallyCounts``) against its null and bootstrap (``Resamples``), for ResNet-18's layer1 and
layer4 shapes.

    python benchmarks/bench_significance.py            # 400 images, CPU
    python benchmarks/bench_significance.py --quick    # 120 images, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dissect import LAYERS, dataset, model, sync  # noqa: E402
from results_file import report  # noqa: E402


def time_run(args, source, **resamples) -> float:
    from ndcore.engine import Dissection, DissectOptions

    options = DissectOptions(batch_size=args.batch_size, device=args.device,
                             workers=args.workers, **resamples)
    run = Dissection(model(), LAYERS, source, options, quiet=True)
    sync(args.device)
    start = time.perf_counter()
    result = run.run()
    sync(args.device)
    has_stats = result.layers[LAYERS[0]].significance is not None
    assert has_stats == (not resamples), "the run did (not) compute the statistics asked for"
    return time.perf_counter() - start


def broden_sized_batch(images: int, labels: int = 1197, planes: int = 4, size: int = 112,
                       per_image: int = 20, seed: int = 0):
    """A label space of ``labels`` labels over Broden's six categories, and a batch whose label
    planes hold rectangles of ``per_image`` labels per image (no images: counts only)."""
    import numpy as np

    from ndcore.data.labelspace import LabelSpace
    from ndcore.data.probe import ProbeBatch
    from ndcore.data.vocabulary import Vocabulary

    categories = ["object", "part", "scene", "material", "texture", "color"]
    cats = [categories[l % len(categories)] for l in range(labels)]
    vocab = Vocabulary(categories, ["-"] + [f"l{l}" for l in range(1, labels)],
                       [[]] + [[cats[l]] for l in range(1, labels)],
                       np.asarray([-1] + [categories.index(cats[l]) for l in range(1, labels)]))
    space = LabelSpace(vocab)
    rng = np.random.default_rng(seed)
    planes_ = np.zeros((images, planes, size, size), np.int32)
    for i in range(images):
        for _ in range(per_image):
            y, x = rng.integers(0, size - 16, 2)
            h, w = rng.integers(8, 48, 2)
            planes_[i, rng.integers(planes), y:y + h, x:x + w] = rng.integers(1, labels)
    batch = ProbeBatch(torch.arange(images), torch.zeros(images, 0, 0, 0, dtype=torch.uint8),
                       torch.as_tensor(planes_), torch.zeros(images, 1, dtype=torch.int64),
                       torch.ones(images, len(categories), dtype=torch.bool))
    return space, batch


def time_accumulators(args) -> list:
    """ms per batch of the counts and of the resamples, at Broden's vocabulary size."""
    from ndcore.engine.options import DEFAULT_BOOTSTRAP, DEFAULT_NULL_PERMUTATIONS
    from ndcore.engine.statistics.counts import TallyCounts
    from ndcore.engine.statistics.resamples import Resamples

    space, batch = broden_sized_batch(args.batch_size)
    rows = []
    for name, units, side in (("layer1", 64, 56), ("layer4", 512, 7)):
        maps = torch.randn(args.batch_size, units, side, side, generator=torch.Generator()
                           .manual_seed(0))
        thresholds = torch.quantile(maps.transpose(0, 1).reshape(units, -1), 0.995, dim=1)
        counts = TallyCounts(thresholds, space)
        resamples = Resamples(thresholds, space, "cpu", DEFAULT_NULL_PERMUTATIONS,
                              DEFAULT_BOOTSTRAP, 0, lite=False)  # the default union: paper
        times = {}
        for label, accumulator in (("counts", counts), ("resamples", resamples)):
            accumulator.add(maps, batch)  # warm-up
            laps = []
            for _ in range(3):
                start = time.perf_counter()
                accumulator.add(maps, batch)
                laps.append(time.perf_counter() - start)
            times[label] = statistics.median(laps) * 1000
        rows.append((f"{name} shape ({units}u {side}x{side}), {space.vocabulary.num_labels} "
                     f"labels: counts / null + bootstrap, ms per batch of {args.batch_size}",
                     f"{times['counts']:.0f} / {times['resamples']:.0f}"))
    return rows


def main() -> None:
    from ndcore.engine.options import DEFAULT_BOOTSTRAP, DEFAULT_NULL_PERMUTATIONS

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--quick", action="store_true", help="120 images, one repeat")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.repeats = 120, 1
    source = dataset(args.images)
    time_run(args, dataset(min(args.images, 40)))  # warm-up: page cache, allocator, threads
    plain, full = [], []
    for _ in range(args.repeats):  # interleaved, so that a load change hits both
        plain.append(time_run(args, source, null_permutations=0, bootstrap=0))
        full.append(time_run(args, source))
    a, b = statistics.median(plain), statistics.median(full)
    labels = source.vocabulary.num_labels
    rows = [
        ("images", f"{args.images}"),
        ("dissection, --no-null --bootstrap 0 (s)", f"{a:.2f} ({args.images / a:.0f} img/s)"),
        (f"with the null ({DEFAULT_NULL_PERMUTATIONS} permutations) and the bootstrap "
         f"({DEFAULT_BOOTSTRAP} resamples) (s)", f"{b:.2f} ({args.images / b:.0f} img/s)"),
        ("ratio with / without", f"{b / a:.2f} (target <= 1.5)"),
        (f"the plain dissection per batch of {args.batch_size} (4 layers, ms)",
         f"{a / (args.images / args.batch_size) * 1000:.0f}"),
        *time_accumulators(args),
    ]
    report(rows, f"bench_significance ({args.device})", "bench_significance.py", sys.argv[1:],
           write=not args.no_write, device=args.device,
           note=f"median of {args.repeats} repeat(s); ResNet-18 (random weights) layer1-layer4, "
                f"synthetic 224x224 probe set ({labels} labels); batch {args.batch_size}, "
                f"{args.workers} loader workers, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
