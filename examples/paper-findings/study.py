"""The paper's findings (Bau et al., CVPR 2017) reproduced on ndcore's built-in probe world.

Trains the small networks of nets.py on the synthetic world (train.py), dissects them as ndcore
series (one per comparison, dissect.py), computes each finding's numbers (findings.py) and
writes the Markdown page, its SVG figures and a JSON of the numbers (report.py):

    python examples/paper-findings/study.py --out DIR            # the study (make paper)
    python examples/paper-findings/study.py --out DIR --reduced  # tiny, for the tests

Everything is seeded; trained networks and finished series are cached under DIR by a hash of
their settings, so a rerun reuses them and an interrupted run continues where it stopped.
The full study writes docs/paper-findings.md and docs/paper-findings/ (``--doc`` elsewhere);
the reduced one writes DIR/paper-findings.md unless ``--doc`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dissect  # noqa: E402  (the example's sibling modules)
import findings  # noqa: E402
import nets  # noqa: E402
import report  # noqa: E402
import train  # noqa: E402

from ndcore.files import replace_atomically  # noqa: E402

REPO = HERE.parent.parent
DEFAULT_DOC = REPO / "docs" / "paper-findings.md"
NETS_FILE = HERE / "nets.py"


@dataclass(frozen=True)
class StudyConfig:
    """What the study trains and dissects (the full study's values are the defaults)."""

    probe_images: int = 1000  # synthetic:size=N, the probe set (seed 0)
    train_images: int = 3000  # training images (seed 1234), as the demo CNN's
    val_images: int = 300
    iterations: int = 300  # batches of every training run
    batch_size: int = 32
    checkpoints: Tuple[int, ...] = (10, 30, 100)  # besides 0 and the last (finding 3)
    widths: Tuple[str, ...] = ("vgg_small", "vgg_small_w2", "vgg_small_w4")  # finding 4
    architectures: Tuple[str, ...] = ("alexnet_small", "vgg_small", "resnet_small")  # 5
    rotate_alphas: Tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # finding 6
    null_permutations: int = 8  # finding 6's significance counts (ndcore's defaults)
    bootstrap: int = 20
    dissect_batch: int = 50


REDUCED = StudyConfig(probe_images=64, train_images=48, val_images=16, iterations=6,
                      batch_size=16, checkpoints=(2,), widths=("vgg_small", "vgg_small_w2"),
                      architectures=("alexnet_small", "vgg_small"), rotate_alphas=(0.0, 1.0),
                      null_permutations=2, bootstrap=2, dissect_batch=10)

BASE = "vgg_small"  # the reference network of every comparison
SELF_SUPERVISED = "vgg_small_rotation"
PAPER_ORDER = ("resnet_small", "vgg_small", "alexnet_small")  # the paper: ResNet > VGG > AlexNet


def spec(net: str) -> str:
    return f"python:{NETS_FILE}:{net}"


def log(message: str) -> None:
    print(f"[paper-findings {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- training -------------------------------------------------------------------------------


def train_all(config: StudyConfig, root: Path, quiet: bool) -> Dict[str, Path]:
    """Every network the comparisons need, trained (or found) under ``root``: net -> run dir."""
    wanted = list(dict.fromkeys([BASE, SELF_SUPERVISED, "vgg_small_nobn", *config.widths,
                                 *config.architectures]))
    data = train.DataCache()
    runs = {}
    for net in wanted:
        settings = train.TrainSettings(
            net, config.iterations, config.batch_size, train_images=config.train_images,
            val_images=config.val_images,
            checkpoints=config.checkpoints if net == BASE else ())
        done = train.is_trained(root / settings.key())
        if not done:
            log(f"training {net} ({settings.task}, {config.iterations} iterations)")
        runs[net] = train.train(settings, root, data, log=log, quiet=quiet)
    return runs


def last_weights(run: Path) -> Path:
    return run / train.read_record(run)["checkpoints"][-1]


# -- the comparisons as series ---------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One series: member name -> (net, weights file), in order, with its x-axis."""

    name: str
    members: Tuple[Tuple[str, str, Path], ...]
    x: Optional[Tuple[float, ...]] = None
    x_label: Optional[str] = None
    extra: Tuple[Tuple[str, Any], ...] = ()  # dissection options of this series only


def comparisons(config: StudyConfig, runs: Dict[str, Path]) -> List[Comparison]:
    base = runs[BASE]
    checkpoints = train.read_record(base)["checkpoints"]
    order = lambda n: tuple(float(i) for i in range(n))  # noqa: E731
    width_names = {"vgg_small": "bn-width1", "vgg_small_w2": "bn-width2",
                   "vgg_small_w4": "bn-width4"}
    conditions = [("bn-width1", BASE, last_weights(base)),
                  ("nobn-width1", "vgg_small_nobn", last_weights(runs["vgg_small_nobn"]))]
    conditions += [(width_names[n], n, last_weights(runs[n])) for n in config.widths
                   if n != BASE]
    arch_names = {"alexnet_small": "alexnet", "vgg_small": "vgg", "resnet_small": "resnet"}
    return [
        Comparison("supervision", (
            ("supervised", BASE, last_weights(base)),
            ("self-supervised", SELF_SUPERVISED, last_weights(runs[SELF_SUPERVISED])),
            ("random-init", BASE, base / checkpoints[0])), order(3), "training"),
        Comparison("iterations", tuple((Path(c).stem, BASE, base / c) for c in checkpoints)),
        Comparison("conditions", tuple(conditions), order(len(conditions)), "variant"),
        Comparison("architectures", tuple((arch_names[n], n, last_weights(runs[n]))
                                          for n in config.architectures),
                   order(len(config.architectures)), "architecture"),
        Comparison("rotation", (("supervised", BASE, last_weights(base)),), None, None, (
            ("rotate", ["conv5"]), ("rotate_alpha", tuple(config.rotate_alphas)),
            ("null_permutations", config.null_permutations),
            ("bootstrap", config.bootstrap))),
    ]


def member_weights(out: Path, comparison: Comparison) -> List[dissect.Member]:
    """The members' weights, copied as ``<member>.pt`` so that each member's run directory
    is named after its role in the comparison (``supervised``, ``iter_000100``, ...)."""
    folder = out / "weights" / comparison.name
    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for name, net, weights in comparison.members:
        copy = folder / f"{name}.pt"
        if not copy.is_file() or copy.read_bytes() != Path(weights).read_bytes():
            replace_atomically(copy, lambda tmp, w=weights: shutil.copyfile(w, tmp))
        members.append(dissect.Member(spec(net), copy))
    return members


def dissect_all(config: StudyConfig, runs: Dict[str, Path], out: Path,
                quiet: bool) -> Dict[str, Dict[str, Any]]:
    """Every comparison's series under ``out/series``: name -> {"seconds", "reused",
    "members"}."""
    dataset = f"synthetic:size={config.probe_images}"
    done = {}
    for comparison in comparisons(config, runs):
        options = {"batch_size": config.dissect_batch, "null_permutations": 0, "bootstrap": 0,
                   **dict(comparison.extra)}
        directory = out / "series" / comparison.name
        log(f"dissecting the {comparison.name} series ({len(comparison.members)} members)")
        info = dissect.dissect_series(directory, member_weights(out, comparison), nets.LAYERS,
                                      dataset, comparison.x, comparison.x_label, quiet=quiet,
                                      **options)
        done[comparison.name] = {**info, "directory": str(directory),
                                 "members": dissect.load_series(directory)}
    return done


# -- the findings -----------------------------------------------------------------------------


def by_name(series: Dict[str, Any]) -> Dict[str, Dict[str, Dict]]:
    return {m["name"]: m["layers"] for m in series["members"]}


def compute_findings(config: StudyConfig, series: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    sup = by_name(series["supervision"])
    cond = by_name(series["conditions"])
    arch = by_name(series["architectures"])
    rot = by_name(series["rotation"])["supervised"]
    iters = [(m["x"], findings.unique(m["layers"][findings.LAST]))
             for m in series["iterations"]["members"]]
    arch_names = [n for n in ("resnet", "vgg", "alexnet") if n in arch]
    widths = [n for n in ("bn-width1", "bn-width2", "bn-width4") if n in cond]
    return {
        "layer_trend": {"vgg": findings.layer_trend(sup["supervised"]),
                        **{n: findings.layer_trend(arch[n]) for n in arch_names if n != "vgg"}},
        "supervision": findings.supervision(sup, "supervised", "self-supervised"),
        "iterations": findings.iterations(iters),
        "batchnorm": findings.batchnorm(cond, "bn-width1", "nobn-width1"),
        "width": findings.width(cond, widths),
        "architectures": findings.architectures(arch, arch_names),
        "rotation": findings.rotation(rot),
        "significance": findings.significance(
            {k: v for k, v in rot.items() if "@rot" not in k}),
    }


def _in_repo(value: Any) -> Any:
    """``value`` with the checkout's absolute path left out of its texts (model specs and
    weights paths), so that the published numbers do not name this machine's folders."""
    if isinstance(value, str):
        return value.replace(f"{REPO}{os.sep}", "")
    if isinstance(value, list):
        return [_in_repo(v) for v in value]
    if isinstance(value, dict):
        return {k: _in_repo(v) for k, v in value.items()}
    return value


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_study(out: Path, doc: Path, reduced: bool, quiet: bool) -> Dict[str, Any]:
    config = REDUCED if reduced else StudyConfig()
    t0, c0 = time.time(), cpu_seconds()
    out.mkdir(parents=True, exist_ok=True)
    runs = train_all(config, out / "models", quiet)
    series = dissect_all(config, runs, out, quiet)
    results = {
        "reduced": reduced, "config": asdict(config),
        "training": {net: {k: v for k, v in train.read_record(run).items()
                           if k in ("task", "val", "seconds", "key")}
                     for net, run in runs.items()},
        "series": {name: {k: _in_repo(v) for k, v in s.items() if k != "directory"}
                   for name, s in series.items()},
        "findings": compute_findings(config, series),
        # what training and dissecting took when each was made (a rerun reuses them), and
        # this run's own time
        "timing": {"train_seconds": round(sum(train.read_record(r)["seconds"]
                                              for r in runs.values()), 1),
                   "dissect_seconds": round(sum(s["seconds"] for s in series.values()), 1),
                   "run_seconds": round(time.time() - t0, 1),
                   "run_cpu_seconds": round(cpu_seconds() - c0, 1)},
    }
    body = json.dumps(results, indent=1)
    replace_atomically(out / "findings.json", lambda tmp: tmp.write_text(body))
    report.write(results, doc, HERE / "discussion.md" if not reduced else None)
    log(f"done in {results['timing']['run_seconds']:.0f}s: {doc}")
    return results


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True,
                   help="working folder: trained networks, series, findings.json")
    p.add_argument("--reduced", action="store_true",
                   help="a tiny study that checks the code runs (not the findings)")
    p.add_argument("--doc", type=Path, default=None,
                   help=f"the Markdown page to write (default {DEFAULT_DOC.relative_to(REPO)}; "
                        "with --reduced: OUT/paper-findings.md); figures go to its folder "
                        "named after it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    doc = args.doc or (args.out / "paper-findings.md" if args.reduced else DEFAULT_DOC)
    run_study(args.out, doc, args.reduced, args.quiet)


if __name__ == "__main__":
    main()
