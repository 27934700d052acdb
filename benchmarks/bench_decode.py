"""Decoding benchmark: PIL against torchvision.io (libjpeg-turbo, libpng), and nvJPEG on a GPU.

Single-threaded decode rates (images per second, best of ``--repeats``) of:

- the synthetic Broden set's 224x224 JPEGs (flat-coloured drawings: cheap to decode);
- 500x375 JPEGs with photo-like texture (what ImageNet / Places photos cost), written here;
- the synthetic set's 112x112 label PNGs, decoded to label numbers (R + 256 G), as the Broden
  reader does;
- whole Broden items (``BrodenDataset.read``: the image and its label planes) with
  ``NDCORE_DECODE=pil`` and with the default (torchvision.io where it applies);
- on CUDA: one batched nvJPEG call per ``--gpu-batch`` JPEGs, to device memory.

    python benchmarks/bench_decode.py
    python benchmarks/bench_decode.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import update_results  # noqa: E402


def rate(fn, items, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pil_plane(path):
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1]


def photo_like(folder: Path, n: int, size=(375, 500)):
    """JPEGs with the entropy of photographs: smooth shapes plus fine noise, quality 90."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        path = folder / f"photo{i:03d}.jpg"
        if not path.exists():
            base = np.stack([np.sin(xx / rng.uniform(5, 40) + rng.uniform(0, 6)) *
                             np.cos(yy / rng.uniform(5, 40)) for _ in range(3)], -1)
            img = 128 + 80 * base + rng.normal(0, 18, (h, w, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu-batch", type=int, default=64)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)

    from ndcore.data import decode
    from ndcore.data.broden import BrodenDataset
    from ndcore.data.synthetic import ensure_synthetic

    root = ensure_synthetic(size=max(args.images, 400), seed=0, image_size=224, label_size=112)
    ds = BrodenDataset(root)
    n = min(args.images, len(ds))
    jpegs = [ds.rows[i]["image"] for i in range(n)]
    pngs = [path for i in range(n) for _, path in ds.rows[i]["planes"]][:n]
    photos = photo_like(Path(root).parent / "bench_decode_photos", min(n, 100))

    rows = []

    def compare(what, items, slow, fast, unit="images/s"):
        a, b = rate(slow, items, args.repeats), rate(fast, items, args.repeats)
        rows.append((what, f"{a:,.0f}", f"{b:,.0f}", f"{b / a:.2f}x"))
        print(f"{what}: PIL {a:,.0f} {unit}, torchvision.io {b:,.0f} ({b / a:.2f}x)", flush=True)

    compare(f"JPEG 224x224 (synthetic Broden, {len(jpegs)})", jpegs, pil_rgb, decode.read_rgb)
    compare(f"JPEG 500x375 (photo-like, {len(photos)})", photos, pil_rgb, decode.read_rgb)
    compare(f"label PNG 112x112 -> numbers ({len(pngs)})", pngs, pil_plane, decode.read_label_png)

    def read_with(backend):
        def read(i):
            os.environ["NDCORE_DECODE"] = backend
            return ds.read(i)
        return read

    try:
        compare(f"Broden item: image + label planes ({n})", list(range(n)), read_with("pil"),
                read_with("auto"))
    finally:
        os.environ.pop("NDCORE_DECODE", None)

    if args.device.startswith("cuda") and torch.cuda.is_available():
        device = torch.device(args.device)
        for what, items in (("JPEG 224x224", jpegs), ("JPEG 500x375", photos)):
            batches = [items[i:i + args.gpu_batch] for i in range(0, len(items), args.gpu_batch)]
            decode.decode_jpegs_on_device(batches[0], device)  # warm-up (nvJPEG handles)
            torch.cuda.synchronize()

            def gpu(batch):
                decode.decode_jpegs_on_device(batch, device)
                torch.cuda.synchronize()

            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                for batch in batches:
                    gpu(batch)
                best = min(best, time.perf_counter() - start)
            cpu = rate(decode.read_rgb, items, 1)
            g = len(items) / best
            rows.append((f"{what}: nvJPEG, batches of {args.gpu_batch} (vs torchvision.io CPU)",
                         f"{cpu:,.0f}", f"{g:,.0f}", f"{g / cpu:.2f}x"))
            print(rows[-1], flush=True)

    body = ("| decode | PIL (/s) | torchvision.io (/s) | speed-up |\n|---|---:|---:|---:|\n" +
            "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows))
    print(body)
    if not args.no_write:
        import torchvision
        import PIL

        command = "python benchmarks/bench_decode.py " + " ".join(sys.argv[1:])
        update_results(f"bench_decode ({args.device})", command, body,
                       note=f"one thread, best of {args.repeats}; Pillow {PIL.__version__}, "
                            f"torchvision {torchvision.__version__}; decoded pixels are "
                            "identical (tests/test_decode.py)", device=args.device)


if __name__ == "__main__":
    main()
