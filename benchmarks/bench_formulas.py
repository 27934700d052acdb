"""Compositional explanations: optimal vs beam formula search, on the CPU (docs/formulas.md).

Data: the built-in synthetic probe world at Broden's resolution (images 224x224, label planes
112x112), 2,000 images. Units: ResNet-18's ``layer4`` (512 units, 7x7 maps) with random seeded
weights (no download), as in bench_dissect.py: a real 512-unit layer whose units are *not* trained
concept detectors, so their best IoUs are low and the bounds prune least (the hard case for the
optimal search). Each unit's mask is its map upsampled (bilinear) to 112x112 and thresholded at
its top-0.5% quantile over the data set (the dissection's rule). The FormulaData built from it is
cached; the timed part is the search alone, optimal then beam on the same data, interleaved
and repeated, as CPU time of this process (the machine is shared). ``--model demo`` takes the
128 trained units of DemoNet's conv5 instead (units that do detect the world's concepts).

    python benchmarks/bench_formulas.py              # 2000 images, 512 units, length 3, beam 5
    python benchmarks/bench_formulas.py --model demo # DemoNet conv5, 128 units
    python benchmarks/bench_formulas.py --quick      # 400 images, 128 units, one repeat
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: the search itself is single-threaded
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import report  # noqa: E402

QUANTILE = 0.005
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def source(n: int):
    from ndcore.data.broden import BrodenDataset
    from ndcore.data.synthetic import ensure_synthetic

    return BrodenDataset(ensure_synthetic(size=n, seed=0, image_size=224, label_size=112))


def layer4_maps(src, batch: int = 50) -> torch.Tensor:
    """ResNet-18 (random, seed 0) layer4 maps of every image, float16 [N, 512, 7, 7]."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    body = torch.nn.Sequential(*list(net.children())[:-2])  # up to layer4
    out = []
    with torch.no_grad():
        for lo in range(0, len(src), batch):
            imgs = np.stack([src.read(i, labels=False).image
                             for i in range(lo, min(lo + batch, len(src)))])
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
            out.append(body((x - MEAN) / STD).half())
    return torch.cat(out)


def demo_conv5_maps(src, batch: int = 100) -> torch.Tensor:
    """DemoNet's (trained on the synthetic world) conv5 maps, inputs resized to its 112x112,
    float16 [N, 128, 14, 14]: units that do detect the world's concepts."""
    from ndcore.demo.model import DEMO_INPUT_SIZE, build_demo_model, preprocess

    net = build_demo_model()
    out = []
    with torch.no_grad():
        for lo in range(0, len(src), batch):
            imgs = np.stack([src.read(i, labels=False).image
                             for i in range(lo, min(lo + batch, len(src)))])
            x = torch.nn.functional.interpolate(preprocess(imgs), size=DEMO_INPUT_SIZE,
                                                mode="area")
            x = net.conv3(net.conv2(net.conv1(x)))
            out.append(net.conv5(net.conv4(net.pool(x))).half())
    return torch.cat(out)


def build(src, maps: torch.Tensor, units: int):
    from ndcore.formulas.data import FormulaDataBuilder
    from ndcore.progress import progress_bar

    maps = maps[:, :units]
    thresholds = torch.tensor(np.stack([  # per unit, over all images and positions
        np.quantile(maps[:, u].float().numpy(), 1 - QUANTILE) for u in range(units)]))
    builder = FormulaDataBuilder(src.vocabulary.label_names, units)
    with progress_bar() as bar:
        task = bar.add_task("signatures", total=len(src))
        for i in range(len(src)):
            item = src.read(i, image=False)
            up = torch.nn.functional.interpolate(maps[i:i + 1].float(), size=tuple(item.label_size),
                                                 mode="bilinear", align_corners=False)[0]
            builder.add_image(item.planes, item.image_labels, up > thresholds[:, None, None])
            bar.advance(task)
    return builder.finish()


def cached_data(args):
    """The FormulaData for these parameters, built once (npz beside the synthetic data)."""
    from ndcore.data.synthetic import default_cache_dir
    from ndcore.formulas.data import FormulaData

    tag = "" if args.model == "resnet18" else f"_{args.model}"
    path = default_cache_dir() / f"formulas_bench_n{args.images}_u{args.units}{tag}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return FormulaData(list(z["label_names"]), int(z["n_units"]), int(z["n_images"]),
                           int(z["n_pixels"]), *(z[k] for k in FormulaData.__dataclass_fields__
                                                 if k.startswith(("sig_", "unit_")))), None
    src = source(args.images)
    start = time.perf_counter()
    maps = layer4_maps(src) if args.model == "resnet18" else demo_conv5_maps(src)
    data = build(src, maps, args.units)
    seconds = time.perf_counter() - start
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, label_names=np.array(data.label_names), n_units=data.n_units,
             n_images=data.n_images, n_pixels=data.n_pixels,
             **{k: getattr(data, k) for k in FormulaData.__dataclass_fields__
                if k.startswith(("sig_", "unit_"))})
    tmp.replace(path)
    return data, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--units", type=int, help="default: all of the layer's (512; demo: 128)")
    p.add_argument("--model", choices=("resnet18", "demo"), default="resnet18",
                   help="resnet18: layer4, random weights; demo: DemoNet conv5, trained")
    p.add_argument("--length", type=int, default=3)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="400 images, 128 units, one repeat")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.units, args.repeats = 400, 128, 1
    args.units = args.units or (512 if args.model == "resnet18" else 128)
    from ndcore.formulas.search import search_formulas
    from ndcore.formulas.tables import LabelTables

    data, build_s = cached_data(args)
    units = range(data.n_units)
    start = time.process_time()
    tables = LabelTables(data, np.flatnonzero(data.label_sizes()[1:] > 0) + 1)
    t_tables = time.process_time() - start
    search_formulas(data, units[:1])  # builds the shared tables once (data.cache)
    t_opt, t_beam, w_opt, w_beam = [], [], [], []
    for _ in range(args.repeats):  # interleaved, CPU time of this process (a shared machine)
        for method, cpu, wall in (("optimal", t_opt, w_opt), ("beam", t_beam, w_beam)):
            start, wall0 = time.process_time(), time.perf_counter()
            res = search_formulas(data, units, length=args.length, method=method, beam=args.beam)
            cpu.append(time.process_time() - start)
            wall.append(time.perf_counter() - wall0)
            if method == "optimal":
                opt = res
            else:
                beam = res
    o, b = statistics.median(t_opt), statistics.median(t_beam)
    worse = [(r.iou, s.iou) for r, s in zip(opt, beam) if s.iou < r.iou - 1e-12]
    fired = sum(1 for r in opt if r.iou > 0)
    n = tables.n
    everything = n + 3 * n ** 2 + 9 * n ** 3
    triples = tables.triple.nbytes if tables.triple is not None else 0
    table_mib = (tables.pair.nbytes + triples) / 2**20
    rows = [
        ("probe images / units / candidate labels", f"{data.n_images} / {data.n_units} / {n}"),
        ("pixels (all images)", f"{data.n_pixels:,}"),
        ("signatures (distinct label sets)", f"{data.n_signatures:,}"),
        ("FormulaData in memory (MiB)", f"{data.nbytes / 2**20:.1f}"),
        ("shared label tables: pairs + dense triples (MiB, CPU s)",
         f"{table_mib:.1f}, {t_tables:.2f}"),
        ("build (maps + masks + signatures, s)", "cached" if build_s is None else f"{build_s:.1f}"),
        (f"optimal, length {args.length}: CPU s (wall s)",
         f"{o:.2f} ({statistics.median(w_opt):.2f}); {o / len(units) * 1e3:.1f} ms/unit"),
        (f"beam {args.beam}, length {args.length}: CPU s (wall s)",
         f"{b:.2f} ({statistics.median(w_beam):.2f}); {b / len(units) * 1e3:.1f} ms/unit"),
        ("ratio optimal / beam (CPU)", f"{o / b:.2f} (target <= 2)"),
        ("ratio with the shared tables counted in both", f"{(o + t_tables) / (b + t_tables):.2f}"),
        ("units where beam is suboptimal",
         f"{len(worse)} / {fired} ({100 * len(worse) / max(fired, 1):.1f}%)"),
        ("mean IoU optimal / beam", f"{np.mean([r.iou for r in opt]):.4f} / "
                                    f"{np.mean([r.iou for r in beam]):.4f}"),
        ("largest IoU gap (optimal - beam)", f"{max((x - y for x, y in worse), default=0):.4f}"),
        ("visited per unit, optimal (median / max)",
         f"{statistics.median(r.visited for r in opt):.0f} / {max(r.visited for r in opt)} "
         f"(exhaustive: {everything:,})"),
        ("visited per unit, beam (median)", f"{statistics.median(r.visited for r in beam):.0f}"),
        ("optimal formulas by length (1/2/3)",
         " / ".join(str(sum(1 for r in opt if r.length == k)) for k in (1, 2, 3))),
        ("peak RSS of the process (MiB)",
         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"),
    ]
    what = ("ResNet-18 layer4, random weights (seed 0)" if args.model == "resnet18"
            else "DemoNet conv5, trained weights")
    title = "bench_formulas (cpu)" + ("" if args.model == "resnet18" else f", {args.model}")
    report(rows, title, "bench_formulas.py", sys.argv[1:], write=not args.no_write,
           note=f"median of {args.repeats} repeat(s), CPU time of the process, search only "
                f"(the shared tables apart); BLAS on 1 thread; {what}; top-{QUANTILE:.1%} "
                f"masks upsampled to 112x112; figures and what limits them: docs/formulas.md")

if __name__ == "__main__":
    main()
