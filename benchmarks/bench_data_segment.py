"""`ndcore data segment` with `colors` against the segmenter alone (issue 19; target <= 1.2x).

On ``--images`` JPEGs of the synthetic set (``--size`` pixels, generated here, nothing from the
network), in one process, alternating:

- the segmenter alone: decode (``read_rgb``) + ``ColorSegmenter.segment``, nothing written;
- the command's work (``segment_folder``, what ``ndcore data segment DIR --segmenter colors
  --out OUT`` runs after its imports): list, decode, segment, write the images, label PNGs,
  journal and tables, into a fresh directory each time.

Medians over ``--repeats``; wall-clock and process CPU time (all threads) per image.

    python benchmarks/bench_data_segment.py
    python benchmarks/bench_data_segment.py --images 200 --repeats 1 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_file import update_results  # noqa: E402

from ndcore.data.decode import read_rgb  # noqa: E402
from ndcore.data.probesets.segment import segment_folder  # noqa: E402
from ndcore.data.segmenters import ColorSegmenter  # noqa: E402
from ndcore.data.synthetic import generate  # noqa: E402


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="segment_folder's --workers")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_segment_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        syn = generate(tmp / "syn", size=args.images, seed=0, image_size=args.size,
                       label_size=args.size // 2)
        photos = tmp / "photos"
        photos.mkdir()
        for jpg in (syn / "images" / "synthetic").glob("*.jpg"):
            shutil.copy(jpg, photos / jpg.name)
        files = sorted(photos.glob("*.jpg"))
        print(f"{len(files)} JPEGs of {args.size}x{args.size} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        segmenter = ColorSegmenter()

        def alone() -> None:
            for path in files:
                rgb = read_rgb(path)
                images = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
                segmenter.segment(images)

        def command() -> None:
            out = tmp / "probe"
            shutil.rmtree(out, ignore_errors=True)
            segment_folder(photos, segmenter, "colors", out, workers=args.workers,
                           progress=False)

        alone()  # warm caches (files, allocator) for both
        runs = {"alone": [], "command": []}
        for r in range(args.repeats):
            for name, fn in (("alone", alone), ("command", command)):
                runs[name].append(timed(fn))
                wall, cpu = runs[name][-1]
                print(f"repeat {r + 1}: {name:8s} {wall / len(files) * 1e3:6.2f} ms/image wall, "
                      f"{cpu / len(files) * 1e3:6.2f} ms CPU", flush=True)
        written = sum(f.stat().st_size for f in (tmp / "probe").rglob("*") if f.is_file())

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    per = {k: (w / len(files) * 1e3, c / len(files) * 1e3) for k, (w, c) in med.items()}
    rows = [
        ("segmenter alone (decode + segment, nothing written)", *per["alone"], "1.00x", "1.00x"),
        (f"ndcore data segment (workers {args.workers})", *per["command"],
         f"{med['command'][0] / med['alone'][0]:.2f}x",
         f"{med['command'][1] / med['alone'][1]:.2f}x"),
    ]
    body = ("| run | wall ms/image | CPU ms/image | wall vs alone | CPU vs alone |\n"
            "|---|---:|---:|---:|---:|\n" +
            "\n".join(f"| {a} | {b:.2f} | {c:.2f} | {d} | {e} |" for a, b, c, d, e in rows))
    # Each repeat's own ratio (its two runs saw the same machine load).
    pairs = [(c[0] / a[0], c[1] / a[1]) for a, c in zip(runs["alone"], runs["command"])]
    body += ("\n\nper repeat, command / alone: wall " +
             ", ".join(f"{w:.2f}x" for w, _ in pairs) + "; CPU " +
             ", ".join(f"{c:.2f}x" for _, c in pairs))
    print(body)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if not args.no_write:
        command_line = " ".join(["python benchmarks/bench_data_segment.py", *sys.argv[1:]])
        update_results(
            "bench_data_segment (cpu)", command_line, body,
            note=f"{len(files)} synthetic JPEGs of {args.size}x{args.size}, colors segmenter; "
                 f"medians over {args.repeats} alternating repeats; the command's work "
                 f"in-process (segment_folder; the CLI adds its start-up); it writes in a "
                 f"second thread while the next images are labelled, so its extra CPU time "
                 f"(file creation, PNG encoding) overlaps labelling where a core is free; "
                 f"probe set {written / 2**20:.0f} MiB; load average {load:.1f} at the end "
                 f"(a machine shared with other jobs: compare runs of one repeat)")


if __name__ == "__main__":
    main()
