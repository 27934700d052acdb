"""A series of checkpoints against separate runs (issue 18; target: the series >= 1.3x faster).

Eight checkpoints of the demo CNN (the shipped ``demo_weights.pt`` with its parameters
perturbed, one seed each, saved as ``iter_0000.pt`` .. ``iter_7000.pt`` in a temporary
folder), dissected on the synthetic probe set (generated or reused from the cache before any
timing; nothing from the network), layers conv2-conv5 as in the demo, with the command's
default options. Whole commands, as a user runs them (new processes, a fresh ``--out`` each
time), alternating, the order flipped every repeat:

- separate: ``python -m ndcore dissect --model demo --weights iter_K.pt ... --quiet
  --no-report`` for each checkpoint, one after the other;
- series: one ``python -m ndcore dissect --model demo --weights iter_0000.pt ... --weights
  iter_7000.pt ... --quiet --no-report`` (one pass over the probe data for all eight).

Medians over ``--repeats`` of the wall-clock seconds and of the processes' CPU seconds (user +
system of the finished children, their loader workers included), and the ratios separate /
series. Once, the series members' ``tally.csv`` files are checked to equal the separate runs'
byte for byte (the benchmark stops otherwise). The machine's load average is noted before and
after: the 2 cores may be shared.

    python benchmarks/bench_series.py                      # 150 images, 3 repeats (~12 min)
    python benchmarks/bench_series.py --quick --no-write   # 60 images, 1 repeat (~3 min)

(times on 2 cores shared with other jobs, load average 4-6.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_file import update_results  # noqa: E402

from ndcore.data.synthetic import ensure_synthetic  # noqa: E402
from ndcore.demo.model import WEIGHTS_PATH  # noqa: E402
from ndcore.results.series import read_series  # noqa: E402

LAYERS = "conv2,conv3,conv4,conv5"  # the demo's (ndcore/cli/demo.py)


def make_checkpoints(folder: Path, count: int, noise: float) -> List[Path]:
    """``count`` perturbed copies of the demo weights: each parameter plus Gaussian noise of
    ``noise`` times its own standard deviation (BatchNorm's running statistics are kept, so
    every checkpoint is a working model)."""
    trained = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    paths = []
    for seed in range(count):
        g = torch.Generator().manual_seed(seed)
        state = {}
        for key, value in trained.items():
            if value.is_floating_point() and "running_" not in key and value.numel() > 1:
                value = value + noise * value.std() * torch.randn(value.shape, generator=g)
            state[key] = value
        path = folder / f"iter_{seed * 1000:04d}.pt"
        torch.save(state, path)
        paths.append(path)
    return paths


def dissect_cmd(weights: List[Path], out: Path, size: int, extra: List[str]) -> List[str]:
    return [sys.executable, "-m", "ndcore", "dissect", "--model", "demo",
            *[a for w in weights for a in ("--weights", str(w))], "--layers", LAYERS,
            "--dataset", f"synthetic:size={size}", "--out", str(out), "--quiet", "--no-report",
            *extra]


def timed(commands: List[List[str]]) -> Tuple[float, float]:
    """Wall and CPU seconds (user + system of the finished children) of the commands, run one
    after the other."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for cmd in commands:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def check_same_tallies(series_dir: Path, separate: dict) -> int:
    """Assert that each series member's tally.csv files equal its separate run's, byte for
    byte; the number of files compared."""
    series = read_series(series_dir)
    if not series.complete or len(series.members) != len(separate):
        raise SystemExit(f"{series_dir}: the series is not complete, or not of "
                         f"{len(separate)} members")
    compared = 0
    for member, run_dir in zip(series.members, series.run_dirs()):
        alone = separate[Path(member.weights).resolve()]
        for layer in LAYERS.split(","):
            a, b = run_dir / layer / "tally.csv", alone / layer / "tally.csv"
            if a.read_bytes() != b.read_bytes():  # not `assert`: it must hold under -O too
                raise SystemExit(f"{a} differs from {b}: no speed-up of a wrong result")
            compared += 1
    return compared


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=150, help="synthetic probe images")
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.05,
                    help="perturbation of the weights, in standard deviations of each tensor")
    ap.add_argument("--extra", default="",
                    help="more `ndcore dissect` flags for every command, e.g. '--no-null'")
    ap.add_argument("--quick", action="store_true", help="60 images, 1 repeat")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    if args.quick:
        args.images, args.repeats = 60, 1
    extra = args.extra.split()

    load_before = load()
    ensure_synthetic(size=args.images, seed=0)  # what synthetic:size=N reads; built untimed
    with tempfile.TemporaryDirectory(prefix="bench_series_") as tmp:
        tmp = Path(tmp)
        weights = make_checkpoints(tmp, args.checkpoints, args.noise)

        def separate(out: Path):
            return [dissect_cmd([w], out / w.stem, args.images, extra) for w in weights]

        def series(out: Path):
            return [dissect_cmd(weights, out, args.images, extra)]

        runs = {"separate": [], "series": []}
        loads = []
        checked, options = 0, {}
        began = time.perf_counter()
        for r in range(args.repeats):
            order = ("separate", "series") if r % 2 == 0 else ("series", "separate")
            loads.append(load())
            for name in order:
                out = tmp / f"{name}-{r}"
                runs[name].append(timed((separate if name == "separate" else series)(out)))
                wall, cpu = runs[name][-1]
                print(f"repeat {r + 1}: {name:8s} {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                      f"(load {load():.1f})", flush=True)
            if r == 0:  # a speed-up of the same results only
                checked = check_same_tallies(
                    tmp / "series-0",
                    {w.resolve(): tmp / "separate-0" / w.stem for w in weights})
                print(f"tally.csv: {checked} files equal byte for byte", flush=True)
                config = tmp / "separate-0" / weights[0].stem / "config.json"
                options = json.loads(config.read_text())["options"]  # the defaults in force
            for name in order:
                shutil.rmtree(tmp / f"{name}-{r}", ignore_errors=True)
    load_after = load()
    minutes = (time.perf_counter() - began) / 60

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    n = len(weights)
    rows = [(f"{n} separate runs, one after the other", *med["separate"]),
            (f"one series of the {n} checkpoints", *med["series"])]
    body = ("| run | wall (s) | CPU (s) | wall per checkpoint (s) |\n|---|---:|---:|---:|\n" +
            "\n".join(f"| {a} | {w:.1f} | {c:.1f} | {w / n:.1f} |" for a, w, c in rows))
    wall_ratio = med["separate"][0] / med["series"][0]
    cpu_ratio = med["separate"][1] / med["series"][1]
    pairs = [(a[0] / b[0], a[1] / b[1]) for a, b in zip(runs["separate"], runs["series"])]
    body += (f"\n\nseparate / series: wall **{wall_ratio:.2f}x** (target >= 1.3x: "
             f"{'met' if wall_ratio >= 1.3 else 'NOT met'}), CPU {cpu_ratio:.2f}x; per repeat: "
             "wall " + ", ".join(f"{w:.2f}x" for w, _ in pairs) +
             "; CPU " + ", ".join(f"{c:.2f}x" for _, c in pairs) +
             f".\n\ntally.csv of the series members = the separate runs', byte for byte "
             f"({checked} files).")
    print(body)
    if not args.no_write:
        command_line = " ".join(["python benchmarks/bench_series.py", *sys.argv[1:]])
        update_results(
            "bench_series (cpu)", command_line, body,
            note=f"{n} checkpoints of the demo CNN (shipped weights + {args.noise:g} std noise), "
                 f"layers {LAYERS}, synthetic:size={args.images}, `ndcore dissect --quiet "
                 f"--no-report{(' ' + args.extra) if args.extra else ''}` with its default "
                 f"options (batch {options.get('batch_size')}, {options.get('workers')} loader "
                 f"workers, null {options.get('null_permutations')} permutations, bootstrap "
                 f"{options.get('bootstrap')}) as whole processes (start-up included), "
                 f"fresh --out each time; medians over {args.repeats} repeats, separate and "
                 f"series alternating; CPU = user + system of the processes and their "
                 f"loader workers; load average "
                 f"{load_before:.1f} before, {load_after:.1f} after (at each repeat's start: "
                 f"{', '.join(f'{x:.1f}' for x in loads)}; a machine shared with other jobs); "
                 f"{minutes:.0f} min in all")


if __name__ == "__main__":
    main()
