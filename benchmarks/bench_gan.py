"""GAN dissection benchmark: dissecting the real DCGAN's layers against generating and
segmenting the same samples alone, side by side in one run (target: ratio <= 1.3), with the
peak memory of each (fresh processes).

    python benchmarks/bench_gan.py                       # 10,000 samples, colors, CPU
    python benchmarks/bench_gan.py --samples 2000 --no-write
    python benchmarks/bench_gan.py --device cuda
    python benchmarks/bench_gan.py --segmenter face-parts --samples 2000   # ndcore-mediapipe
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import report  # noqa: E402

LAYERS = ["main.2", "main.5", "main.8", "main.11"]


def generate_and_segment(args) -> float:
    """The floor: sample the latents, generate, segment. Nothing else."""
    from ndcore.api import resolve_model, resolve_segmenter
    from ndcore.gan.generator import require_generator, to_images
    from ndcore.gan.latents import latents

    adapter = resolve_model("dcgan-faces")
    info = require_generator(adapter)
    segmenter, _ = resolve_segmenter(args.segmenter)
    module = adapter.module.eval().to(args.device)
    sync(args.device)
    start = time.perf_counter()
    with torch.no_grad():
        for b in range(0, args.samples, args.batch_size):
            idx = range(b, min(args.samples, b + args.batch_size))
            images = to_images(module(latents(idx, info.latent_shape, 0).to(args.device)),
                               info, adapter.spec)
            segmenter.segment(images)
    sync(args.device)
    return time.perf_counter() - start


def dissect(args, out: Path) -> float:
    from ndcore.api import run_generator_dissection

    sync(args.device)
    start = time.perf_counter()
    run_generator_dissection("dcgan-faces", LAYERS, args.segmenter, out, samples=args.samples,
                             seed=0, batch_size=args.batch_size, device=args.device,
                             threshold=args.threshold, overwrite=True, quiet=True,
                             null_permutations=0, bootstrap=0)  # as before they existed
    sync(args.device)
    return time.perf_counter() - start


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def child(args) -> None:
    """In a fresh process: one measurement, then its time and peak RSS as JSON."""
    if args.child == "floor":
        seconds = generate_and_segment(args)
    else:
        seconds = dissect(args, Path(tempfile.mkdtemp(prefix="bench-gan-")) / "run")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak}))


def measure(args, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--samples", str(args.samples),
           "--batch-size", str(args.batch_size), "--device", args.device,
           "--segmenter", args.segmenter, "--threshold", args.threshold]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--segmenter", default="colors")
    p.add_argument("--threshold", default="quantile", choices=["quantile", "best-iou"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--child", choices=["floor", "dissect"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    floors, runs = [], []
    for _ in range(args.repeats):  # side by side, alternating
        floors.append(measure(args, "floor"))
        runs.append(measure(args, "dissect"))
    f = statistics.median(m["seconds"] for m in floors)
    d = statistics.median(m["seconds"] for m in runs)
    rows = [
        ("samples", f"{args.samples} (DCGAN 64x64, segmenter {args.segmenter})"),
        ("generate + segment alone (s)", f"{f:.1f} ({args.samples / f:.0f} samples/s)"),
        (f"dissect {','.join(LAYERS)} (s)", f"{d:.1f} ({args.samples / d:.0f} samples/s)"),
        ("ratio dissection / generate+segment", f"{d / f:.2f} (target <= 1.3)"),
        ("peak RSS, generate + segment (MiB)", f"{max(m['peak_rss_mib'] for m in floors):.0f}"),
        ("peak RSS, dissection (MiB)", f"{max(m['peak_rss_mib'] for m in runs):.0f}"),
    ]
    # colors (a trivial segmenter) keeps the section name older results used
    title = args.device if args.segmenter == "colors" else f"{args.device}, {args.segmenter}"
    report(rows, f"bench_gan ({title})", "bench_gan.py", sys.argv[1:],
           write=not args.no_write, device=args.device,
           note=f"threshold {args.threshold}, batch {args.batch_size}, "
                f"{torch.get_num_threads()} threads, median of {args.repeats}")


if __name__ == "__main__":
    main()
