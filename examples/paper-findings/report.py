"""The study's page: docs/paper-findings.md, its SVG figures (ndcore.figures.charts) in the
folder named after it, and findings.json beside them.

The statements are written from the numbers by rules fixed in advance (findings.py): each says
whether the paper's direction holds here, by how much, and what the paper reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ndcore.figures.charts import rotation_curves, series_panels, stacked_bars, standalone
from ndcore.files import replace_atomically

CATEGORIES = ("object", "part", "scene", "material", "texture", "color")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FIGURES = {  # finding -> figure file (in the page's folder)
    "layer_trend": "layer-trend.svg", "supervision": "supervision.svg",
    "iterations": "iterations.svg", "conditions": "batchnorm-width.svg",
    "architectures": "architectures.svg", "rotation": "rotation.svg",
}

# What the paper reports (Bau et al., CVPR 2017, on Broden: 1,197 concepts, networks trained
# on ImageNet and Places). Only the rotation figure is a number; the rest are its directions.
PAPER = {
    "layer_trend": "colour and texture detectors dominate the early layers (conv1, conv2); "
                   "object and part detectors emerge in the late ones (conv5)",
    "supervision": "supervised networks have more unique detectors than self-supervised ones; "
                   "self-supervised networks have many texture detectors but few object "
                   "detectors",
    "iterations": "unique detectors grow as training proceeds",
    "batchnorm": "batch normalisation lowers interpretability markedly",
    "width": "a wider conv5 has more unique detectors (until it saturates)",
    "architectures": "by unique detectors, ResNet > VGG > GoogLeNet > AlexNet",
    "rotation": "a full random rotation (alpha = 1) of AlexNet conv5 removes about 80% of its "
                "unique detectors",
}
VERDICT = {"yes": "**Reproduced here: yes.**", "partly": "**Reproduced here: partly.**",
           "no": "**Reproduced here: no.**"}


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _layer_bars(members: Sequence[Tuple[str, Dict[str, Dict]]], layers: Sequence[str]):
    """Bars (member/layer, unique detectors per category) grouped by member."""
    bars, groups = [], []
    for name, per_layer in members:
        for layer in layers:
            cats = per_layer[layer]["categories"]
            bars.append((layer, {c: int(cats.get(c, {}).get("unique", 0)) for c in CATEGORIES}))
        groups.append((name, len(layers)))
    return bars, groups


def _members(results: Dict, series: str) -> List[Tuple[str, Dict[str, Dict]]]:
    return [(m["name"], m["layers"]) for m in results["series"][series]["members"]]


def figures(results: Dict[str, Any]) -> Dict[str, str]:
    """Each figure's SVG text, by file name."""
    sup = dict(_members(results, "supervision"))
    out = {}
    bars, _ = _layer_bars([("vgg", sup["supervised"])], LAYERS)
    out[FIGURES["layer_trend"]] = stacked_bars(
        bars, CATEGORIES, "1. unique detectors per layer (vgg_small, supervised)")
    bars, groups = _layer_bars(_members(results, "supervision"), LAYERS)
    out[FIGURES["supervision"]] = stacked_bars(
        bars, CATEGORIES, "2. unique detectors: supervised, self-supervised, random", groups)
    iters = [(m["name"], m["x"], {layer: {c: int(s["categories"][c]["unique"])
                                          for c in CATEGORIES}
                                  for layer, s in m["layers"].items()})
             for m in results["series"]["iterations"]["members"]]
    out[FIGURES["iterations"]] = series_panels(
        iters, CATEGORIES, "iteration",
        "3. unique detectors per category against training iterations (vgg_small)")
    cond = [(name, {c: int(layers["conv5"]["categories"][c]["unique"]) for c in CATEGORIES})
            for name, layers in _members(results, "conditions")]
    out[FIGURES["conditions"]] = stacked_bars(
        cond, CATEGORIES, "4. conv5 unique detectors: batch norm and width")
    bars, groups = _layer_bars(_members(results, "architectures"), LAYERS)
    out[FIGURES["architectures"]] = stacked_bars(
        bars, CATEGORIES, "5. unique detectors per layer and architecture", groups)
    rot = dict(_members(results, "rotation"))["supervised"]
    points = []
    for name, s in rot.items():
        if name.startswith("conv5@rot"):
            per = {c: int(s["categories"][c]["detectors"]) for c in CATEGORIES}
            points.append((float(name.split("@rot", 1)[1]), int(s["unique_detectors"]), per))
    out[FIGURES["rotation"]] = rotation_curves(
        [("vgg_small conv5", points)], CATEGORIES,
        "6. random rotation of conv5: detectors against alpha")
    return {name: standalone(svg) for name, svg in out.items()}


# -- the statements -------------------------------------------------------------------------


def _statements(f: Dict[str, Any]) -> Dict[str, str]:
    lt = f["layer_trend"]["vgg"]
    others = ", ".join(f"{name} {v['verdict']} ({_pct(v['color_texture_low'])} and "
                       f"{_pct(v['color_texture_high'])} colour and texture, "
                       f"{_pct(v['object_part_low'])} and {_pct(v['object_part_high'])} "
                       "objects and parts)"
                       for name, v in f["layer_trend"].items() if name != "vgg")
    sup, it, bn, wd, ar, ro = (f[k] for k in ("supervision", "iterations", "batchnorm", "width",
                                              "architectures", "rotation"))
    s = sup["unique_conv5"]
    o = sup["object_unique_conv5"]
    w = wd["unique_conv5"]
    return {
        "layer_trend": (
            f"{VERDICT[lt['verdict']]} In vgg_small, colour and texture make up "
            f"{_pct(lt['color_texture_low'])} of the unique detectors of conv1-conv2 and "
            f"{_pct(lt['color_texture_high'])} of conv4-conv5; objects and parts "
            f"{_pct(lt['object_part_low'])} and {_pct(lt['object_part_high'])}. "
            f"The same rule on the other architectures: {others or 'none dissected'}. "
            f"The paper: {PAPER['layer_trend']}."),
        "supervision": (
            f"{VERDICT[sup['verdict']]} conv5 unique detectors: supervised {s['supervised']}, "
            f"self-supervised (rotation prediction) {s['self-supervised']}, random init "
            f"{s.get('random-init', '-')}; object detectors among them: {o['supervised']}, "
            f"{o['self-supervised']} and {o.get('random-init', '-')}. "
            f"The paper: {PAPER['supervision']}."),
        "iterations": (
            f"{VERDICT[it['verdict']]} conv5 unique detectors at iterations "
            + ", ".join(f"{x:g}: {y}" for x, y in zip(it["iterations"], it["unique_conv5"]))
            + f" (Spearman's rank correlation with the iteration {it['spearman']:+.2f}). "
            f"The paper: {PAPER['iterations']}."),
        "batchnorm": (
            f"{VERDICT[bn['verdict']]} conv5 unique detectors with batch norm "
            f"{bn['unique_conv5']['bn-width1']}, without {bn['unique_conv5']['nobn-width1']}; "
            f"over all five layers {bn['unique_all_layers']['bn-width1']} and "
            f"{bn['unique_all_layers']['nobn-width1']}. The paper: {PAPER['batchnorm']}."),
        "width": (
            f"{VERDICT[wd['verdict']]} conv5 unique detectors by width: "
            + ", ".join(f"{name} ({wd['units'][name]} units) {w[name]} "
                        f"({wd['detectors'][name]} detectors)" for name in w)
            + f". The paper: {PAPER['width']}."),
        "architectures": (
            f"{VERDICT[ar['verdict']]} conv5 unique detectors: "
            + ", ".join(f"{k} {v}" for k, v in ar["unique_conv5"].items())
            + f" ({ar['pairs_in_paper_order']} of {ar['pairs']} pairs in the paper's order); "
            "over all five layers: "
            + ", ".join(f"{k} {v}" for k, v in ar["unique_all_layers"].items())
            + f". The paper: {PAPER['architectures']}."),
        "rotation": (
            f"{VERDICT[ro['verdict']]} conv5 unique detectors against alpha: "
            + ", ".join(f"{a:g}: {u}" for a, u in zip(ro["alpha"], ro["unique"]))
            + f"; detectors {ro['detectors'][0]} to {ro['detectors'][-1]}. A full rotation "
            f"removes {_pct(ro['unique_drop'])} of the unique detectors, against about 80% in "
            "the paper (AlexNet conv5 on Broden)."),
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    """A Markdown table; columns of numbers aligned right."""
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] == "-" for r in rows)
               for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _layer_table(members: Sequence[Tuple[str, Dict[str, Dict]]],
                 layers: Sequence[str] = LAYERS) -> List[str]:
    rows = []
    for name, per_layer in members:
        for layer in layers:
            s = per_layer[layer]
            cats = [int(s["categories"][c]["unique"]) for c in CATEGORIES]
            rows.append([name, layer, s["units"], s["detectors"], s["unique_detectors"], *cats])
    return _table(["member", "layer", "units", "detectors", "unique", *CATEGORIES], rows)


def _figure(name: str, folder: str) -> str:
    return f"![{name}]({folder}/{FIGURES[name]})\n"


def markdown(results: Dict[str, Any], folder: str, discussion: str = "") -> str:
    f = results["findings"]
    st = _statements(f)
    cfg = results["config"]
    t = results["timing"]
    lines = ["# The paper's findings on the built-in probe world", ""]
    if results["reduced"]:
        lines += ["> **Reduced run** (`study.py --reduced`): a few images and iterations, to "
                  "check that the study's code runs. Its numbers say nothing about the "
                  "findings.", ""]
    lines += [
        "Network Dissection (Bau et al., CVPR 2017) reports six findings about what makes units "
        "interpretable. This page checks each on ndcore's built-in synthetic probe world: small "
        "AlexNet-, VGG- and ResNet-shaped CNNs (`examples/paper-findings/nets.py`) trained "
        "for a few minutes on the world's images, dissected as ndcore series (one per "
        "comparison). Reproduce it with `make paper` "
        "(`python examples/paper-findings/study.py --out DIR`); every number below is that "
        "command's output (seeded), and `findings.json` beside the figures holds them all.",
        "",
        f"Settings: {cfg['train_images']} training images (the demo CNN's, seed 1234) "
        f"rendered at 112 px and resized to 64, {cfg['iterations']} iterations of "
        f"{cfg['batch_size']} images (AdamW, one-cycle schedule); probe set "
        f"`synthetic:size={cfg['probe_images']}` (seed 0, never trained on), quantile 0.005, "
        f"cut-off 0.04, union `paper`. The synthetic world has 4 objects, 6 parts, 24 scenes, "
        f"4 materials, 6 textures and 11 colours: counts of unique detectors are bounded by "
        f"those numbers, far below Broden's 1,197 concepts, so only the paper's directions "
        f"can be compared, not its counts.",
        "",
        f"Time: training {t['train_seconds'] / 60:.1f} min and dissecting "
        f"{t['dissect_seconds'] / 60:.1f} min (wall, as recorded when each was made); the run "
        f"that wrote this page took {t['run_seconds']:.0f} s "
        f"({t['run_cpu_seconds']:.0f} s of CPU), reusing what was already made.",
        "",
        "## Summary", ""]
    titles = {"layer_trend": "1. Layer trend", "supervision": "2. Supervised vs self-supervised",
              "iterations": "3. Training iterations", "batchnorm": "4a. Batch normalisation",
              "width": "4b. Width", "architectures": "5. Architectures",
              "rotation": "6. Random rotation"}
    verdicts = {k: (f[k]["vgg"] if k == "layer_trend" else f[k])["verdict"] for k in titles}
    lines += _table(["finding", "the paper", "reproduced here"],
                    [[titles[k], PAPER[k], verdicts[k]] for k in titles])
    lines += ["Networks (validation accuracy after training):", ""]
    rows = []
    for net, rec in results["training"].items():
        val = ", ".join(f"{k} {v:.2f}" for k, v in rec["val"].items())
        rows.append([net, rec["task"], val, f"{rec['seconds']:.0f}"])
    lines += _table(["network", "task", "validation accuracy", "training s (wall)"], rows)

    sup = _members(results, "supervision")
    lines += ["## 1. Layer trend: colours and textures early, objects and parts late", "",
              st["layer_trend"], "", _figure("layer_trend", folder)]
    lines += _layer_table([m for m in sup if m[0] == "supervised"])
    lines += ["## 2. Supervised against self-supervised training", "",
              "The same vgg_small body trained on the same images, with the demo's labels "
              "(scene, object and colour presence) or with a pretext task that uses none: "
              "predicting by how many quarter turns an image was rotated. The untrained "
              "initialisation is shown for reference.", "",
              st["supervision"], "", _figure("supervision", folder)]
    lines += _layer_table(sup)
    lines += ["## 3. Unique detectors against training iterations", "",
              "Checkpoints along one training run of vgg_small (`iter_NNNNNN.pt`), dissected "
              "as one series.", "", st["iterations"], "", _figure("iterations", folder)]
    lines += _table(["iteration", *(f"{layer} unique" for layer in LAYERS), "conv5 detectors"],
                    [[int(m["x"]), *(int(m["layers"][layer]["unique_detectors"])
                                     for layer in LAYERS),
                      int(m["layers"]["conv5"]["detectors"])]
                     for m in results["series"]["iterations"]["members"]])
    lines += ["## 4. Batch normalisation, and the width of conv5", "",
              "vgg_small with and without BatchNorm, and with conv5 two and four times as "
              "wide (`bn-width1` is vgg_small itself).", "",
              st["batchnorm"], "", st["width"], "", _figure("conditions", folder)]
    lines += _layer_table(_members(results, "conditions"), ("conv5",))
    lines += ["## 5. AlexNet-, VGG- and ResNet-shaped networks", "",
              st["architectures"], "", _figure("architectures", folder)]
    lines += _layer_table(_members(results, "architectures"))
    lines += ["## 6. Random rotation, and significance", "",
              f"vgg_small's conv5 dissected under random rotations Q^alpha (`--rotate conv5 "
              f"--rotate-alpha {','.join(f'{a:g}' for a in cfg['rotate_alphas'])}`; "
              "docs/method.md section 13).", "", st["rotation"], "",
              _figure("rotation", folder)]
    lines += [f"Significance (`--null-permutations {cfg['null_permutations']} --bootstrap "
              f"{cfg['bootstrap']} --fdr 0.05`; docs/method.md sections 14-15; the paper "
              "has no such test): detectors at the 0.04 cut-off against detectors that beat "
              "chance after false-discovery-rate control, and labels stable under the "
              "bootstrap.", ""]
    sig = f["significance"]
    lines += _table(["layer", "units", "detectors (IoU > 0.04)", "unique",
                     "significant (FDR 5%)", "stable labels"],
                    [[layer, s["units"], s["detectors"], s["unique"],
                      s["detectors_fdr"] if s["detectors_fdr"] is not None else "-",
                      s["stable_labels"] if s["stable_labels"] is not None else "-"]
                     for layer, s in sig.items()])
    if discussion:
        lines += [discussion.strip(), ""]
    return "\n".join(lines)


def write(results: Dict[str, Any], doc: Path, discussion: Optional[Path] = None) -> None:
    """The page ``doc``, its figures and findings.json in the folder ``doc``'s stem names."""
    doc = Path(doc)
    folder = doc.parent / doc.stem
    folder.mkdir(parents=True, exist_ok=True)
    writes: List[Tuple[Path, Callable[[Path], Any]]] = []
    for name, svg in figures(results).items():
        writes.append((folder / name, lambda tmp, s=svg: tmp.write_text(s)))
    body = json.dumps(results, indent=1)
    writes.append((folder / "findings.json", lambda tmp: tmp.write_text(body)))
    text = discussion.read_text() if discussion is not None and discussion.is_file() else ""
    page = markdown(results, folder.name, text)
    writes.append((doc, lambda tmp: tmp.write_text(page)))  # last: it refers to the others
    for path, writer in writes:
        replace_atomically(path, writer)
