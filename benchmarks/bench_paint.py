"""GANPaint round trips: POST /api/edit to a real `ndcore paint` server over HTTP on 127.0.0.1,
with the DCGAN (dcgan-faces) dissected by the colors segmenter. Target: median <= 150 ms.

    python benchmarks/bench_paint.py                      # dissects main.8 (500 samples) first
    python benchmarks/bench_paint.py --run RUN --edits 200 --no-write

Each edit has its own seed, painted region (random brush strokes at image resolution) and
concept, alternating remove and add, so no answer can come from a cache. The server runs in its
own process, as `ndcore paint` runs it; this process only sends requests and times them.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import update_results  # noqa: E402

DISSECT = ["dissect", "--model", "dcgan-faces", "--layers", "main.8", "--segmenter", "colors",
           "--samples", "500", "--quiet", "--no-report"]


def ndcore_cmd(*args):
    return [sys.executable, "-m", "ndcore", *args]


def strokes(rng, size, n_strokes=3, radius=4):
    """A random painted region: a few brush strokes, like a person's."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(n_strokes):
        points = rng.uniform(0, [w, h], size=(4, 2))
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for t in np.linspace(0, 1, 24):
                x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
                mask |= (xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2
    return torch.from_numpy(mask)


def start_server(run: Path, layer: str, threads: int):
    proc = subprocess.Popen(ndcore_cmd("paint", str(run), "--layer", layer, "--port", "0",
                                       "--threads", str(threads)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        found = re.search(r"open (http://\S+/)", line)
        if found:
            return proc, found.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"ndcore paint did not start: {proc.stdout.read()}")


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    from ndcore.paint.server import encode_request

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a dissected generator run (default: dissect the DCGAN's "
                                      "main.8 with 500 samples into a temporary folder)")
    parser.add_argument("--layer", default="main.8")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="the server's torch threads (ndcore paint --threads; 0: default)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "faces"
        if not args.run:
            start = time.perf_counter()
            subprocess.run(ndcore_cmd(*DISSECT, "--out", str(run)), check=True,
                           stdout=subprocess.DEVNULL)
            print(f"dissected dcgan-faces main.8 (500 samples) in "
                  f"{time.perf_counter() - start:.1f} s")
        started = time.perf_counter()
        proc, url = start_server(run, args.layer, args.threads)
        print(f"server up at {url} in {time.perf_counter() - started:.1f} s")
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                info = client.get("/api/info").json()
                size = tuple(info["image_size"])
                concepts = [c["name"] for c in info["concepts"]]
                rng = np.random.default_rng(0)
                trips, server_ms, sample_trips = [], [], []
                for i in range(args.warmup + args.edits):
                    seed = int(rng.integers(0, 2**31))
                    t0 = time.perf_counter()
                    client.get("/api/sample", params={"seed": seed}).raise_for_status()
                    t1 = time.perf_counter()
                    body = encode_request(seed, ("ablate", "insert")[i % 2],
                                          concepts[i % len(concepts)], strokes(rng, size))
                    t2 = time.perf_counter()
                    reply = client.post("/api/edit", json=body)
                    t3 = time.perf_counter()
                    reply.raise_for_status()
                    data = reply.json()
                    assert data["image"].startswith("data:image/png;base64,")
                    if i >= args.warmup:
                        trips.append(1000 * (t3 - t2))
                        sample_trips.append(1000 * (t1 - t0))
                        server_ms.append(data["ms"])
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    median, p90 = statistics.median(trips), percentile(trips, 90)
    rows = [
        ("edit round trips timed", f"{len(trips)} (after {args.warmup} warm-up)"),
        ("edit round trip, median (ms)", f"{median:.1f} (target <= 150)"),
        ("edit round trip, p90 (ms)", f"{p90:.1f}"),
        ("edit round trip, max (ms)", f"{max(trips):.1f}"),
        ("of which in the server's edit code, median (ms)", f"{statistics.median(server_ms):.1f}"),
        ("new sample round trip, median (ms)", f"{statistics.median(sample_trips):.1f}"),
        ("image / layer", f"{size[1]}x{size[0]} px / {args.layer} "
                          f"{info['layer_size'][1]}x{info['layer_size'][0]}, "
                          f"{info['num_units']} units"),
        ("concepts", ", ".join(f"{c['name']} ({c['units']})" for c in info["concepts"])),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    if not args.no_write:
        command = "python benchmarks/bench_paint.py" + \
            (f" --edits {args.edits}" if args.edits != 100 else "") + \
            (f" --threads {args.threads}" if args.threads != 1 else "")
        update_results("bench_paint (cpu)", command, table,
                       note="POST /api/edit to `ndcore paint` (its own process) over HTTP on "
                            "127.0.0.1, timed in the client; each edit a new seed, random "
                            "strokes and concept, remove and add alternating; server on the "
                            f"CPU, `ndcore paint --threads {args.threads}`; load average "
                            f"{os.getloadavg()[0]:.1f} at the end (other jobs share the 2 "
                            "cores)")
    return 0 if median <= 150 else 1


if __name__ == "__main__":
    sys.exit(main())
