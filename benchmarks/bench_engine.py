"""Whole-process benchmarks of the staged engine, each as a ratio measured in one run.

- dissect / forward: `ndcore dissect` (ResNet-18 layer1-4, random weights, --no-report) against
  a bare forward script a user would write (torch + torchvision + PIL decoding, the same images,
  the same batch size and loader workers), both as whole processes, start-up included
  (target <= 1.3);
- gloo: the same dissection with `torchrun --nproc-per-node 2` against one process;
- checkpoint overhead: the cost of one checkpoint (measured with a short interval) as a share
  of the default interval (target <= 3%);
- resume: a run killed half-way (after a few checkpoints) and run again, against an
  uninterrupted run; the time lost must be at most one checkpoint interval plus start-up.

    python benchmarks/bench_engine.py              # 400 images, 3 repeats
    python benchmarks/bench_engine.py --images 200 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import report  # noqa: E402

LAYERS = "layer1,layer2,layer3,layer4"

FORWARD_SCRIPT = r'''
import sys, time
import numpy as np, torch, torchvision
from PIL import Image

root, batch, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [l.split(",")[0] for l in open(f"{root}/index.csv").read().splitlines()[1:]]

class Images(torch.utils.data.Dataset):
    def __len__(self): return len(rows)
    def __getitem__(self, i):
        with Image.open(f"{root}/images/{rows[i]}") as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

torch.manual_seed(0)
model = torchvision.models.resnet18().eval()
mean = torch.tensor([123.7, 116.3, 103.5]).view(1, 3, 1, 1)
std = torch.tensor([58.4, 57.1, 57.4]).view(1, 3, 1, 1)
outputs = []
for name in ("layer1", "layer2", "layer3", "layer4"):
    getattr(model, name).register_forward_hook(lambda m, i, o: outputs.append(o))
loader = torch.utils.data.DataLoader(Images(), batch_size=batch, num_workers=workers)
with torch.no_grad():
    for x in loader:
        outputs.clear()
        model((x.float() - mean) / std)
'''


def dataset(n: int) -> Path:
    from ndcore.data.synthetic import ensure_synthetic

    return ensure_synthetic(size=n, seed=0, image_size=224, label_size=112)


def dissect_cmd(data: Path, out: Path, args, *extra: str):
    """A fresh run each time, unless ``extra`` says --resume (then: the same command again)."""
    again = "--resume" in extra
    extra = [e for e in extra if e != "--resume"]
    return ["-m", "ndcore", "dissect", "--model", "torchvision:resnet18", "--random-init",
            "--layers", LAYERS, "--dataset", f"broden:{data}", "--out", str(out), "--quiet",
            "--no-report", "--batch-size", str(args.batch_size), "--workers",
            str(args.workers), *([] if again else ["--overwrite"]),
            # NetDissect-Lite has no null or bootstrap: compare like with like
            "--null-permutations", "0", "--bootstrap", "0", *extra]


def timed(cmd, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def median_of(repeats: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeats))


def killed_then_resumed(data: Path, out: Path, args, interval: float, kill_after: float):
    """Seconds of a run killed after ``kill_after`` s, plus its rerun."""
    cmd = [sys.executable, *dissect_cmd(data, out, args, "--checkpoint-every", str(interval))]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(kill_after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.perf_counter() - start
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    again = timed([sys.executable, *dissect_cmd(data, out, args, "--checkpoint-every",
                                                str(interval), "--resume")])
    resumed = json.loads((out / "config.json").read_text())["run"]
    return killed, again, progress, resumed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of parts to skip: gloo,checkpoint,resume")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    data = dataset(args.images)
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    py = sys.executable
    script = tmp / "forward.py"
    script.write_text(FORWARD_SCRIPT)
    forward_cmd = [py, str(script), str(data), str(args.batch_size), str(args.workers)]
    timed(forward_cmd)  # warm the page cache
    rows = []

    forward = median_of(args.repeats, lambda: timed(forward_cmd))
    dissect = median_of(args.repeats, lambda: timed([py, *dissect_cmd(data, tmp / "one", args)]))
    rows += [("bare forward script, whole process (s)", f"{forward:.2f}"),
             ("ndcore dissect --no-report, whole process (s)", f"{dissect:.2f}"),
             ("ratio dissect / forward", f"{dissect / forward:.2f} (target <= 1.3)")]
    help_s = median_of(args.repeats, lambda: timed([py, "-m", "ndcore", "--help"]))
    rows.append(("`ndcore --help` (s)", f"{help_s:.2f}"))

    if "gloo" not in skip:
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // 2)))
        two = median_of(args.repeats, lambda: timed(
            [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             *dissect_cmd(data, tmp / "two", args, "--workers", "1")[0:]], env=env))
        rows += [("torchrun 2 gloo processes (s)", f"{two:.2f}"),
                 ("ratio 2 processes / 1 process", f"{two / dissect:.2f}")]

    if "checkpoint" not in skip:
        never = median_of(args.repeats, lambda: timed(
            [py, *dissect_cmd(data, tmp / "never", args, "--checkpoint-every", "0")]))
        often = median_of(args.repeats, lambda: timed(
            [py, *dissect_cmd(data, tmp / "often", args, "--checkpoint-every", "1")]))
        # The run times its own checkpoints (config.json): the wall-time difference of two
        # runs is within the noise of this machine.
        timed_ckpt = json.loads((tmp / "often" / "config.json").read_text())["run"]["checkpoints"]
        per = timed_ckpt["seconds"] / max(1, timed_ckpt["count"])
        rows += [("run without checkpoints (s)", f"{never:.2f}"),
                 ("run with a checkpoint every second (s)", f"{often:.2f}"),
                 ("checkpoints in that run, time in them (s)",
                  f"{timed_ckpt['count']}, {timed_ckpt['seconds']:.3f}"),
                 ("cost of one checkpoint (s)", f"{per:.3f}"),
                 ("overhead at the default 120 s interval", f"{100 * per / 120:.2f}% (target <= 3%)")]

    if "resume" not in skip:
        interval = 3.0
        whole = timed([py, *dissect_cmd(data, tmp / "whole", args,
                                        "--checkpoint-every", str(interval))])
        killed, again, progress, resumed = killed_then_resumed(
            data, tmp / "killed", args, interval, kill_after=whole * 0.6)
        assert resumed["resumed"], "the second run did not resume"
        lost = killed + again - whole
        # what the resumed process spent outside its passes: start-up and writing results
        startup = again - (resumed["elapsed_s"] - progress["elapsed_s"])
        rows += [(f"uninterrupted run, checkpoint every {interval:g} s (s)", f"{whole:.2f}"),
                 ("killed at 60% (s) + resumed run (s)", f"{killed:.2f} + {again:.2f}"),
                 ("checkpoint at the kill", f"pass {progress['phase']}, "
                                             f"{progress['images_done']}/{progress['images']} images"),
                 ("time lost", f"{lost:.2f} s (bound: interval {interval:g} s + the resumed "
                               f"process's start-up and writing, {startup:.2f} s = "
                               f"{interval + startup:.2f} s)")]

    report(rows, "bench_engine (cpu, whole processes)", "bench_engine.py", sys.argv[1:],
           write=not args.no_write,
           note=f"{args.images} images 224/112, ResNet-18 layer1-4, batch {args.batch_size}, "
                f"{args.workers} loader workers, median of {args.repeats}")


if __name__ == "__main__":
    main()
