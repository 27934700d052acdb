"""What random rotation costs: ResNet-18 layer4 with 5 rotated copies vs layer4 alone.

A derived layer ``layer4@rot<alpha>`` (docs/method.md section 13) comes from the same forward
pass as layer4: it costs its statistics (and a 512x512 matmul per batch), not another forward
pass. Reports, in one run, the wall time of a plain dissection of layer4 and of a dissection
of layer4 with ``--rotate layer4 --rotate-alpha 0,0.25,0.5,0.75,1`` (six layers' statistics),
and their ratio (target on the CPU: <= 3).

    python benchmarks/bench_rotation.py            # 400 images, CPU
    python benchmarks/bench_rotation.py --quick    # 120 images, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dissect import dataset, model, sync  # noqa: E402
from results_file import report  # noqa: E402

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def time_run(args, source, **rotation) -> float:
    from ndcore.engine import Dissection, DissectOptions

    options = DissectOptions(batch_size=args.batch_size, device=args.device,
                             workers=args.workers, **rotation)
    run = Dissection(model(), ["layer4"], source, options, quiet=True)
    sync(args.device)
    start = time.perf_counter()
    result = run.run()
    sync(args.device)
    assert len(result.layers) == 1 + len(rotation.get("rotate_alpha", ())) * bool(rotation)
    return time.perf_counter() - start


def main() -> None:
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
    plain, rotated = [], []
    for _ in range(args.repeats):  # interleaved, so that a load change hits both
        plain.append(time_run(args, source))
        rotated.append(time_run(args, source, rotate=["layer4"], rotate_alpha=ALPHAS))
    a, b = statistics.median(plain), statistics.median(rotated)
    rows = [
        ("images", f"{args.images}"),
        ("dissection of layer4 (s)", f"{a:.2f} ({args.images / a:.0f} img/s)"),
        ("layer4 + 5 rotations, alpha 0,0.25,0.5,0.75,1 (s)",
         f"{b:.2f} ({args.images / b:.0f} img/s)"),
        ("ratio rotated / plain", f"{b / a:.2f} (target <= 3)"),
    ]
    report(rows, f"bench_rotation ({args.device})", "bench_rotation.py", sys.argv[1:],
           write=not args.no_write, device=args.device,
           note=f"median of {args.repeats} repeat(s); ResNet-18 (random weights), synthetic "
                f"224x224 probe set; batch {args.batch_size}, {args.workers} loader workers, "
                f"{torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
