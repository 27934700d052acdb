"""Each finding's numbers and verdict, from the dissections' summaries.

Inputs are a series' members as ``dissect.load_series`` returns them: ``{"name", "x",
"layers": {layer: LayerResult.summary()}}``. The verdict rules were fixed before the study was
first run (the issue: report what comes out, do not tune until the paper's answer appears):
"yes" when the paper's direction holds in every comparison it names, "partly" when in some,
"no" when in none.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

LOW_LAYERS = ("conv1", "conv2")
HIGH_LAYERS = ("conv4", "conv5")
LAST = "conv5"


def unique(summary: Dict[str, Any], categories: Sequence[str] = ()) -> int:
    """Unique detectors of a layer, over all categories or the ones given."""
    if not categories:
        return int(summary["unique_detectors"])
    return sum(int(summary["categories"].get(c, {}).get("unique", 0)) for c in categories)


def _share(layers: Dict[str, Dict], names: Sequence[str], categories: Sequence[str]) -> float:
    """Share of ``categories`` among the unique detectors of the layers ``names`` (0 when
    those layers have none)."""
    total = sum(unique(layers[n]) for n in names if n in layers)
    part = sum(unique(layers[n], categories) for n in names if n in layers)
    return part / total if total else 0.0


def verdict(holds: Sequence[bool]) -> str:
    if holds and all(holds):
        return "yes"
    return "partly" if any(holds) else "no"


def per_category(layers: Dict[str, Dict], categories: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """``{layer: {category: unique detectors}}``."""
    return {name: {c: unique(s, [c]) for c in categories} for name, s in layers.items()}


def layer_trend(layers: Dict[str, Dict]) -> Dict[str, Any]:
    """Finding 1: colour and texture detectors in early layers, objects and parts in late."""
    ct = ("color", "texture")
    op = ("object", "part")
    shares = {"color_texture_low": _share(layers, LOW_LAYERS, ct),
              "color_texture_high": _share(layers, HIGH_LAYERS, ct),
              "object_part_low": _share(layers, LOW_LAYERS, op),
              "object_part_high": _share(layers, HIGH_LAYERS, op)}
    holds = [shares["color_texture_low"] > shares["color_texture_high"],
             shares["object_part_high"] > shares["object_part_low"]]
    return {**{k: round(v, 3) for k, v in shares.items()}, "verdict": verdict(holds)}


def compare_last(members: Dict[str, Dict[str, Dict]], layer: str = LAST,
                 categories: Sequence[str] = ()) -> Dict[str, int]:
    """Unique detectors of ``layer`` (all categories, or those given) per member."""
    return {name: unique(layers[layer], categories) for name, layers in members.items()}


def supervision(members: Dict[str, Dict[str, Dict]], supervised: str,
                self_supervised: str) -> Dict[str, Any]:
    """Finding 2: supervised training gives more unique detectors than self-supervised, and
    the self-supervised net has relatively few object detectors."""
    conv5 = compare_last(members)
    objects = compare_last(members, categories=("object",))
    holds = [conv5[supervised] > conv5[self_supervised],
             objects[supervised] > objects[self_supervised]]
    return {"unique_conv5": conv5, "object_unique_conv5": objects, "verdict": verdict(holds)}


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either is constant."""
    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        r = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(list(xs)), ranks(list(ys))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else 0.0


def iterations(points: Sequence[Tuple[float, int]]) -> Dict[str, Any]:
    """Finding 3: unique detectors rise with training iterations. ``points``: (iteration,
    unique detectors of conv5), in order."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    rho = spearman(xs, ys)
    holds = [ys[-1] > ys[0], rho >= 0.5]
    return {"iterations": xs, "unique_conv5": ys, "spearman": round(rho, 3),
            "verdict": verdict(holds)}


def batchnorm(members: Dict[str, Dict[str, Dict]], bn: str, no_bn: str) -> Dict[str, Any]:
    """Finding 4a: batch normalisation lowers interpretability (conv5, and all layers)."""
    conv5 = compare_last(members)
    totals = {name: sum(unique(s) for s in layers.values())
              for name, layers in members.items() if name in (bn, no_bn)}
    holds = [conv5[no_bn] > conv5[bn], totals[no_bn] > totals[bn]]
    return {"unique_conv5": {bn: conv5[bn], no_bn: conv5[no_bn]},
            "unique_all_layers": totals, "verdict": verdict(holds)}


def width(members: Dict[str, Dict[str, Dict]], order: Sequence[str]) -> Dict[str, Any]:
    """Finding 4b: a wider conv5 has more unique detectors. ``order``: narrow to wide."""
    conv5 = compare_last(members)
    ys = [conv5[name] for name in order]
    holds = [b > a for a, b in zip(ys, ys[1:])]
    units = {name: int(members[name][LAST]["units"]) for name in order}
    detectors = {name: int(members[name][LAST]["detectors"]) for name in order}
    return {"unique_conv5": dict(zip(order, ys)), "units": units, "detectors": detectors,
            "verdict": verdict(holds)}


def architectures(members: Dict[str, Dict[str, Dict]], paper_order: Sequence[str]) -> Dict:
    """Finding 5: the paper ranks ResNet > VGG > AlexNet (``paper_order``, most first) by
    unique detectors of the last convolutional layer; each pair of that ranking is checked."""
    conv5 = compare_last(members)
    pairs = [(a, b) for i, a in enumerate(paper_order) for b in paper_order[i + 1:]]
    holds = [conv5[a] > conv5[b] for a, b in pairs]
    totals = {name: sum(unique(s) for s in layers.values()) for name, layers in members.items()}
    return {"unique_conv5": conv5, "unique_all_layers": totals,
            "pairs_in_paper_order": sum(holds), "pairs": len(pairs), "verdict": verdict(holds)}


def rotation(layers: Dict[str, Dict], source: str = LAST) -> Dict[str, Any]:
    """Finding 6: unique detectors of ``source`` under rotations Q^alpha (its derived layers
    ``source@rot<alpha>``); the paper: about 80% fewer at alpha 1 (AlexNet conv5)."""
    points: List[Tuple[float, int, int]] = []
    for name, s in layers.items():
        if name.startswith(f"{source}@rot"):
            points.append((float(name.split("@rot", 1)[1]), unique(s), int(s["detectors"])))
    points.sort()
    first, last = points[0], points[-1]
    drop = 1 - last[1] / first[1] if first[1] else 0.0
    holds = [last[1] < first[1], last[2] < first[2]]
    return {"alpha": [p[0] for p in points], "unique": [p[1] for p in points],
            "detectors": [p[2] for p in points], "unique_drop": round(drop, 3),
            "verdict": verdict(holds)}


def significance(layers: Dict[str, Dict]) -> Dict[str, Dict[str, Any]]:
    """Per layer: detectors at the cut-off, significant detectors (FDR), stable labels."""
    return {name: {"units": s["units"], "detectors": s["detectors"],
                   "unique": s["unique_detectors"], "detectors_fdr": s.get("detectors_fdr"),
                   "stable_labels": s.get("stable_labels")}
            for name, s in layers.items()}
