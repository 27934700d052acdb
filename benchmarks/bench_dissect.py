"""End-to-end benchmark: a full dissection vs one forward pass over the same data.

ResNet-18 (random weights, seeded), layers layer1-layer4, on a synthetic Broden-format dataset
at Broden's resolution (images 224x224, label planes 112x112). Reports, in one run:

- the wall time of one forward pass over the data with the engine's own loader and layer
  capture (the floor: decoding + the model), and of a full dissection (both passes, all four
  layers); their ratio is the figure of merit (target on CPU: <= 1.5);
- peak memory (max RSS of the process and its loader workers) of a full dissection at two
  dataset sizes, 10x apart, each in a fresh process (target: ratio <= 1.5).

    python benchmarks/bench_dissect.py            # 2000 images, CPU
    python benchmarks/bench_dissect.py --quick    # 400 images
    python benchmarks/bench_dissect.py --device cuda --images 5000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import report  # noqa: E402

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def dataset(n: int):
    from ndcore.data.broden import BrodenDataset
    from ndcore.data.synthetic import ensure_synthetic

    return BrodenDataset(ensure_synthetic(size=n, seed=0, image_size=224, label_size=112))


def model():
    from ndcore.api import resolve_model

    return resolve_model("torchvision:resnet18", random_init=True)


def options(args, **extra):
    """The engine alone: without the null and the bootstrap (their cost is
    bench_significance.py's)."""
    from ndcore.engine import DissectOptions

    return DissectOptions(batch_size=args.batch_size, device=args.device, workers=args.workers,
                          **{"null_permutations": 0, "bootstrap": 0, **extra})


def time_forward(args, source) -> float:
    """One pass of the engine's loader + model with the same layer capture, nothing else."""
    from ndcore.data.labelspace import LabelSpace
    from ndcore.engine.forward import ModelRunner
    from ndcore.engine.stream import BatchGrid, ProbeStream

    device = torch.device(args.device)
    grid = BatchGrid(len(source), args.batch_size)
    stream = ProbeStream(source, LabelSpace(source.vocabulary), grid, device, args.workers)
    runner = ModelRunner(model(), device)
    sync(args.device)
    start = time.perf_counter()
    with runner.capturing(LAYERS) as run:
        for _, batch in stream.batches(grid.todo(()), image=True, labels=False):
            run(batch)
    sync(args.device)
    return time.perf_counter() - start


def time_dissect(args, source) -> tuple:
    from ndcore.engine import Dissection

    run = Dissection(model(), LAYERS, source, options(args), quiet=True)
    sync(args.device)
    start = time.perf_counter()
    result = run.run()
    sync(args.device)
    info = result.config["run"]
    return time.perf_counter() - start, info["second_pass"], info["map_cache"]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024.0


def child_memory(args) -> None:
    """Run in a fresh process: one full dissection, then print the peak RSS as JSON."""
    source = dataset(args.images)
    time_dissect(args, source)
    print(json.dumps({"images": args.images, "peak_rss_mib": peak_rss_mib()}))


def memory_at(args, n: int) -> float:
    cmd = [sys.executable, __file__, "--child-memory", "--images", str(n), "--device", args.device,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="400 images, one repeat")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--no-memory", action="store_true", help="skip the two-size memory runs")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        return child_memory(args)
    if args.quick:
        args.images, args.repeats = 400, 1
    source = dataset(args.images)
    time_forward(args, dataset(min(args.images, 100)))  # warm-up: page cache, allocator, threads
    forward, full = [], []
    for _ in range(args.repeats):
        forward.append(time_forward(args, source))
        seconds, second_pass, cache = time_dissect(args, source)
        full.append(seconds)
    f, d = statistics.median(forward), statistics.median(full)
    rows = [
        ("images", f"{args.images}"),
        ("one forward pass (s)", f"{f:.2f} ({args.images / f:.0f} img/s)"),
        ("full dissection, 4 layers (s)", f"{d:.2f} ({args.images / d:.0f} img/s)"),
        ("ratio dissection / forward", f"{d / f:.2f} (target <= 1.5)"),
        ("second pass", f"{second_pass}" + (
            f", kept {cache['maps_kept']}/{cache['maps_seen']} maps, "
            f"{cache['bytes_in_memory'] / 2**20:.0f} MiB in memory, "
            f"{cache['bytes_on_disk'] / 2**20:.0f} MiB on disk" if cache else "")),
    ]
    if not args.no_memory:
        small = max(args.images // 10, 50)
        m_small, m_big = memory_at(args, small), memory_at(args, args.images)
        rows += [(f"peak RSS at {small} images (MiB)", f"{m_small:.0f}"),
                 (f"peak RSS at {args.images} images (MiB)", f"{m_big:.0f}"),
                 ("memory ratio (10x images)", f"{m_big / m_small:.2f} (target <= 1.5)")]
    report(rows, f"bench_dissect ({args.device})", "bench_dissect.py", sys.argv[1:],
           write=not args.no_write, device=args.device,
           note=f"median of {args.repeats} repeat(s); batch {args.batch_size}, "
                f"{args.workers} loader workers, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
