"""End-to-end benchmark on large models: ViT-B/16 (tokens) and ResNet-50 (NCHW).

For each model (random weights, seeded) on a synthetic Broden-format dataset at Broden's
resolution (images 224x224, label planes 112x112), in one process:

- one forward pass over the data with the engine's own loader, model runner and layer capture
  (the floor: decoding + the model, with the same precision / channels-last / compile
  settings), and a full dissection (both passes) of two layers; their ratio is the figure of
  merit (target on CPU: <= 1.3);
- ViT-B/16 layers encoder_layer_5 and encoder_layer_11 ([B, 197, 768] tokens -> 768 units on
  14x14), ResNet-50 layers layer3 (1024 units, 14x14) and layer4 (2048 units, 7x7).

    python benchmarks/bench_models.py                       # 200 images, CPU, both models
    python benchmarks/bench_models.py --images 400 --repeats 3
    python benchmarks/bench_models.py --device cuda --images 5000 --precision bf16 --compile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import update_results  # noqa: E402

MODELS = {
    "vit_b_16": ["encoder.layers.encoder_layer_5", "encoder.layers.encoder_layer_11"],
    "resnet50": ["layer3", "layer4"],
}


def dataset(n: int):
    from ndcore.data.broden import BrodenDataset
    from ndcore.data.synthetic import ensure_synthetic

    return BrodenDataset(ensure_synthetic(size=n, seed=0, image_size=224, label_size=112))


def model(name: str):
    from ndcore.api import resolve_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve_model(f"torchvision:{name}", random_init=True)


def options(args):
    from ndcore.engine import DissectOptions

    return DissectOptions(batch_size=args.batch_size, device=args.device, workers=args.workers,
                          precision=args.precision, compile=args.compile,
                          checkpoint_every=0, null_permutations=0, bootstrap=0)


def runner_for(args, adapter, device):
    from ndcore.engine.forward import ModelRunner

    return ModelRunner(adapter, device, args.precision, compile=args.compile)


def time_forward(args, name, source) -> float:
    """One pass of the engine's loader + model runner with the same layer capture."""
    from ndcore.data.labelspace import LabelSpace
    from ndcore.engine.stream import BatchGrid, ProbeStream

    device = torch.device(args.device)
    grid = BatchGrid(len(source), args.batch_size)
    stream = ProbeStream(source, LabelSpace(source.vocabulary), grid, device, args.workers)
    runner = runner_for(args, model(name), device)
    sync(args.device)
    start = time.perf_counter()
    with runner.capturing(MODELS[name]) as run:
        for _, batch in stream.batches(grid.todo(()), image=True, labels=False):
            run(batch)
    sync(args.device)
    return time.perf_counter() - start


def time_dissect(args, name, source) -> tuple:
    from ndcore.engine import Dissection

    run = Dissection(model(name), MODELS[name], source, options(args), quiet=True)
    sync(args.device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run.run()
    sync(args.device)
    return time.perf_counter() - start, result.config.get("run", {})


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: vit_b_16,resnet50")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    source = dataset(args.images)
    rows = []
    for name in args.models.split(","):
        time_forward(args, name, dataset(min(args.images, 50)))  # warm-up (and compile)
        forward, full, run_info = [], [], {}
        for _ in range(args.repeats):  # interleaved, so that a busy machine hits both alike
            forward.append(time_forward(args, name, source))
            seconds, run_info = time_dissect(args, name, source)
            full.append(seconds)
        f, d = statistics.median(forward), statistics.median(full)
        cache = run_info.get("map_cache") or {}
        kept = (f", kept {cache.get('maps_kept')}/{cache.get('maps_seen')} maps"
                if cache.get("maps_seen") else "")
        rows.append((name, ", ".join(l.replace("encoder.layers.", "") for l in MODELS[name]),
                     f"{f:.1f} ({args.images / f:.1f} img/s)",
                     f"{d:.1f} ({args.images / d:.1f} img/s)", f"{d / f:.2f}",
                     f"{run_info.get('second_pass', '?')}{kept}",
                     " / ".join(f"{x:.1f}" for x in forward), " / ".join(f"{x:.1f}" for x in full)))
        print(f"{name}: forward {f:.1f}s, dissection {d:.1f}s, ratio {d / f:.2f} "
              f"(runs: {rows[-1][6]} | {rows[-1][7]})", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = ("| model | layers | one forward pass (s) | full dissection (s) | ratio (target "
              "<= 1.3 on CPU) | second pass | forward runs (s) | dissection runs (s) |\n"
              "|---|---|---|---|---|---|---|---|\n")
    body = header + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    print(body)
    if not args.no_write:
        command = "python benchmarks/bench_models.py " + " ".join(sys.argv[1:])
        extra = ", compile" if args.compile else ""
        title = f"bench_models ({args.device}, {args.precision}{extra})"
        update_results(title, command, body,
                       note=f"{args.images} synthetic images 224x224 (labels 112x112), random "
                            f"weights; median of {args.repeats} interleaved repeat(s); batch "
                            f"{args.batch_size}, {args.workers} loader workers, "
                            f"{torch.get_num_threads()} threads; load average {load:.1f} at "
                            "the end", device=args.device)


if __name__ == "__main__":
    main()
