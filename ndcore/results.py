"""Labelling units from saved counts, and the result files (tally.csv, JSON summaries).

A result can be re-labelled with another IoU cut-off, union convention or category subset
without re-running the model: everything here works from :class:`~ndcore.counts.TallyCounts`
state and the vocabulary saved with the run.
"""

from __future__ import annotations

import csv
import json
from urllib.parse import quote
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .data.vocabulary import Vocabulary
from .errors import NdcoreError, OutputError

UNIONS = ("paper", "lite", "plain")
DEFAULT_CUTOFF = 0.04


def _subset_mask(vocab: Vocabulary, full_vocab: Vocabulary) -> int:
    mask = 0
    for c in vocab.categories:
        mask |= 1 << full_vocab.categories.index(c)
    return mask


def _check_label_space(counts: Dict[str, np.ndarray]) -> None:
    if "labelspace_id_label" not in counts:
        raise OutputError("these counts were written by an older ndcore (before label-space "
                          "counts); run the dissection again")


def ids_to_labels(counts: Dict[str, np.ndarray], values: np.ndarray, vocab: Vocabulary,
                  full_vocab: Vocabulary, axis: int) -> np.ndarray:
    """Sum label-space ids into labels along ``axis``, keeping the ids that a run restricted
    to ``vocab``'s categories would have counted (see data/labelspace.py)."""
    _check_label_space(counts)
    id_label = counts["labelspace_id_label"]
    keep = (counts["labelspace_id_bits"] & _subset_mask(vocab, full_vocab)) != 0
    keep[0] = False
    shape = list(values.shape)
    shape[axis] = full_vocab.num_labels
    out = np.zeros(shape, dtype=values.dtype)
    cols = np.nonzero(keep)[0]
    if cols.size:
        # ids are ordered by label: sum each label's run of kept ids
        labels, starts = np.unique(id_label[cols], return_index=True)
        summed = np.add.reduceat(np.take(values, cols, axis=axis), starts, axis=axis)
        index = [slice(None)] * values.ndim
        index[axis] = labels
        out[tuple(index)] = summed
    return out


def label_counts(counts: Dict[str, np.ndarray], vocab: Vocabulary,
                 full_vocab: Vocabulary) -> Dict[str, np.ndarray]:
    """Intersections [U, L] and label pixel counts [L] of the labels as a run restricted to
    ``vocab``'s categories would have counted them."""
    return {"intersection": ids_to_labels(counts, counts["intersection"], vocab, full_vocab, 1),
            "truth": ids_to_labels(counts, counts["truth"], vocab, full_vocab, 0)}


def activation_counts(counts: Dict[str, np.ndarray], vocab: Vocabulary, union: str,
                      full_vocab: Optional[Vocabulary] = None) -> np.ndarray:
    """Per (unit, label): the sum of a unit's mask sizes that enters the union with that label.

    ``full_vocab`` is the vocabulary the counts were gathered with (its category order defines
    the pattern bits); ``vocab`` may be a restriction of it to fewer categories.
    """
    full_vocab = full_vocab or vocab
    area = counts["area_by_pattern"]  # [U, K]
    n_units = counts["intersection"].shape[0]
    n_labels = full_vocab.num_labels
    if union == "plain":
        return np.repeat(area.sum(1, keepdims=True), n_labels, axis=1)
    if union == "paper":
        patterns = counts["patterns"]
        masks = np.zeros(n_labels, dtype=np.int64)
        for l, cats in enumerate(vocab.label_categories):
            for cat in cats:
                masks[l] |= 1 << full_vocab.categories.index(cat)
        annotated = (patterns[None, :] & masks[:, None]) != 0  # [L, K]
        return area @ annotated.T.astype(np.int64)
    if union == "lite":
        _check_label_space(counts)
        subsets = list(counts["labelspace_lite_subsets"])
        mask = _subset_mask(vocab, full_vocab)
        if mask not in subsets:
            raise NdcoreError(
                f"--union lite with categories {','.join(vocab.categories)}: this run has "
                f"{full_vocab.num_categories} categories, and NetDissect-Lite counts are kept "
                "per category subset only up to 8; dissect again with --categories")
        by_cat = counts["act_lite"][:, subsets.index(mask), :]  # [U, C_full]
        act = np.zeros((n_units, n_labels), dtype=np.int64)
        for l in range(n_labels):
            if vocab.primary[l] >= 0:
                act[:, l] = by_cat[:, full_vocab.categories.index(vocab.categories[vocab.primary[l]])]
        return act
    raise NdcoreError(f"unknown union convention {union!r}; choose one of {', '.join(UNIONS)}")


def best_iou_matrix(counts: Dict[str, np.ndarray], vocab: Vocabulary,
                    full_vocab: Vocabulary) -> Dict[str, np.ndarray]:
    """The best-IoU rule: per (unit, label), the candidate threshold with the largest IoU
    (the first, i.e. lowest, among ties), and the exact counts at it."""
    if "hist" not in counts:
        raise NdcoreError("this run kept no IoU histograms; dissect with --threshold best-iou")
    curves = iou_curves(counts, vocab, full_vocab)
    best = curves["iou"].argmax(axis=2)  # [U, L]
    pick = lambda a: np.take_along_axis(a, best[:, :, None], axis=2)[:, :, 0]  # noqa: E731
    edges = counts["hist_edges"]  # [U, B]
    return {"iou": pick(curves["iou"]), "intersection": pick(curves["intersection"]),
            "activation": pick(curves["activation"]), "truth": curves["truth"],
            "thresholds": np.take_along_axis(edges, best, axis=1)}


def iou_curves(counts: Dict[str, np.ndarray], vocab: Vocabulary,
               full_vocab: Vocabulary) -> Dict[str, np.ndarray]:
    """IoU [U, L, B] at every candidate threshold ``hist_edges`` [U, B], with its counts."""
    hist = counts["hist"]  # [U, V, B]; id 0 counts every pixel
    suffix = lambda a: np.flip(np.cumsum(np.flip(a, -1), -1), -1)  # noqa: E731
    area = suffix(hist[:, 0, :])  # [U, B] mask size at each threshold
    inter = suffix(ids_to_labels(counts, hist, vocab, full_vocab, 1))  # [U, L, B]
    truth = ids_to_labels(counts, counts["truth"], vocab, full_vocab, 0)
    act = np.broadcast_to(area[:, None, :], inter.shape)
    union = act + truth[None, :, None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou[:, vocab.primary < 0, :] = 0.0
    iou[:, 0, :] = 0.0
    return {"iou": iou, "intersection": inter, "activation": act, "truth": truth,
            "edges": counts["hist_edges"]}


def iou_matrix(counts: Dict[str, np.ndarray], vocab: Vocabulary, union: str,
               full_vocab: Optional[Vocabulary] = None,
               rule: str = "quantile") -> Dict[str, np.ndarray]:
    """IoU [U, L] (0 where the union is empty or the label has no kept category)."""
    full_vocab = full_vocab or vocab
    if rule == "best-iou":
        return best_iou_matrix(counts, vocab, full_vocab)
    by_label = label_counts(counts, vocab, full_vocab)
    inter, truth = by_label["intersection"], by_label["truth"]
    act = activation_counts(counts, vocab, union, full_vocab)
    union_size = act + truth[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union_size > 0, inter / np.maximum(union_size, 1), 0.0)
    iou[:, vocab.primary < 0] = 0.0
    iou[:, 0] = 0.0
    return {"iou": iou, "activation": act, "intersection": inter, "truth": truth}


@dataclass
class UnitResult:
    unit: int  # 0-based
    label: str
    category: str
    iou: float
    label_number: int
    by_category: Dict[str, Dict] = field(default_factory=dict)  # cat -> best label of that cat
    ranked: List[Dict] = field(default_factory=list)  # next best labels overall


@dataclass
class LayerResult:
    """The labels of one layer's units under one union convention, cut-off and category set."""

    layer: str
    vocabulary: Vocabulary
    counts: Dict[str, np.ndarray]
    thresholds: np.ndarray
    union: str = "paper"
    cutoff: float = DEFAULT_CUTOFF
    full_vocabulary: Optional[Vocabulary] = None
    topk: Optional[Dict[str, np.ndarray]] = None
    rule: str = "quantile"  # threshold rule: "quantile" or "best-iou" (per unit and concept)
    units: List[UnitResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._label()

    @property
    def num_units(self) -> int:
        return self.counts["intersection"].shape[0]

    def _label(self) -> None:
        vocab = self.vocabulary
        m = iou_matrix(self.counts, vocab, self.union, self.full_vocabulary, self.rule)
        self.iou = m["iou"]
        # best-iou: each (unit, label)'s own threshold [U, L]; None under the quantile rule
        self.best_thresholds = m.get("thresholds")
        self.units = []
        for u in range(self.num_units):
            by_cat = {}
            for c, cat in enumerate(vocab.categories):
                labels = np.nonzero(vocab.primary == c)[0]
                best = int(labels[np.argmax(self.iou[u, labels])]) if labels.size else 0
                if not labels.size or self.iou[u, best] <= 0:
                    # NetDissect-Lite: no label with IoU > 0 gives label 0, written as "".
                    by_cat[cat] = {"label": "", "number": 0, "iou": 0.0, "truth": 0,
                                   "activation": 0, "intersect": 0}
                    continue
                by_cat[cat] = {
                    "label": vocab.label_names[best], "number": best,
                    "iou": float(self.iou[u, best]), "truth": int(m["truth"][best]),
                    "activation": int(m["activation"][u, best]),
                    "intersect": int(m["intersection"][u, best]),
                }
            # The best category; ties (e.g. all zero) go to the later one, as NetDissect-Lite's
            # reversed argsort does.
            best_cat = max(vocab.categories,
                           key=lambda c: (by_cat[c]["iou"], vocab.categories.index(c)))
            top = by_cat[best_cat]
            order = np.argsort(-self.iou[u], kind="stable")[:6]
            ranked = [
                {"label": vocab.label_names[l], "category": vocab.categories[vocab.primary[l]],
                 "iou": float(self.iou[u, l])}
                for l in order if self.iou[u, l] > 0
            ]
            self.units.append(UnitResult(u, top["label"], best_cat, top["iou"], top["number"],
                                         by_cat, ranked))

    def detectors(self) -> List[UnitResult]:
        return [u for u in self.units if u.iou > self.cutoff]

    def summary(self) -> Dict:
        det = self.detectors()
        per_cat = {}
        for cat in self.vocabulary.categories:
            units = [u for u in det if u.category == cat]
            per_cat[cat] = {"detectors": len(units), "unique": len({u.label for u in units})}
        return {
            "layer": self.layer,
            "units": self.num_units,
            "detectors": len(det),
            "unique_detectors": len({u.label for u in det}),
            "categories": per_cat,
            "cutoff": self.cutoff,
            "union": self.union,
            "images": int(self.counts["num_images"]),
        }

    # -- writers -----------------------------------------------------------------------------

    def tally_rows(self) -> List[Dict]:
        """Rows in NetDissect-Lite's tally.csv layout, sorted by score (descending)."""
        rows = []
        for u in sorted(self.units, key=lambda r: (-r.iou, r.unit)):
            row = {"unit": u.unit + 1, "category": u.category, "label": u.label,
                   "score": f"{u.iou:.6f}"}
            for cat in self.vocabulary.categories:
                b = u.by_category[cat]
                row[f"{cat}-label"] = b["label"]
                row[f"{cat}-truth"] = b["truth"]
                row[f"{cat}-activation"] = b["activation"]
                row[f"{cat}-intersect"] = b["intersect"]
                row[f"{cat}-iou"] = f"{b['iou']:.6f}"
            rows.append(row)
        return rows

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        rows = self.tally_rows()
        fields = ["unit", "category", "label", "score"] + [
            f"{cat}-{k}" for cat in self.vocabulary.categories
            for k in ("label", "truth", "activation", "intersect", "iou")]
        with open(directory / "tally.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        units = [
            {"unit": u.unit, "label": u.label, "category": u.category, "iou": u.iou,
             "detector": u.iou > self.cutoff, "ranked": u.ranked,
             "threshold": float(self.thresholds[u.unit])}
            for u in self.units
        ]
        with open(directory / "summary.json", "w") as f:
            json.dump({"summary": self.summary(), "units": units}, f, indent=1)
        np.save(directory / "iou.npy", self.iou.astype(np.float32))  # [U, L] for analysis


LAYER_FILES = ("counts.npz", "thresholds.npy")


def layer_dir(run_dir: Path, layer: str) -> Path:
    """A layer's folder in a run directory (dotted names stay readable; '/' etc. are quoted)."""
    return Path(run_dir) / quote(layer, safe="._-")


def save_layer_counts(directory: Path, counts: Dict[str, np.ndarray], thresholds: np.ndarray,
                      topk: Optional[Dict[str, np.ndarray]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / "counts.npz", **counts)
    np.save(directory / "thresholds.npy", thresholds.astype(np.float32))
    if topk is not None:
        np.savez_compressed(directory / "topk.npz", **topk)


def _category_view(full: Vocabulary, categories: Optional[Sequence[str]], where) -> Vocabulary:
    """The run's vocabulary, restricted to ``categories`` when given (unknown ones refused)."""
    if not categories:
        return full
    unknown = [c for c in categories if c not in full.categories]
    if unknown:
        raise NdcoreError(f"{where}: the run has no category {unknown[0]!r}; "
                          f"it has {', '.join(full.categories)}")
    return full.restricted(categories)


class DissectionResult:
    """All layers of a run; load with :meth:`load`, relabel with :meth:`relabel`."""

    def __init__(self, layers: Dict[str, LayerResult], vocabulary: Vocabulary,
                 config: Dict, directory: Optional[Path] = None) -> None:
        self.layers = layers
        self.vocabulary = vocabulary
        self.config = config
        self.directory = directory

    def __getitem__(self, layer: str) -> LayerResult:
        return self.layers[layer]

    def summary(self) -> Dict[str, Dict]:
        return {name: lr.summary() for name, lr in self.layers.items()}

    @classmethod
    def load(cls, directory, union: Optional[str] = None, cutoff: Optional[float] = None,
             categories: Optional[Sequence[str]] = None) -> "DissectionResult":
        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise OutputError(f"{directory}: not an ndcore run directory (no config.json)")
        config = json.loads(config_path.read_text())
        if not config.get("complete", False):
            raise OutputError(f"{directory}: the run did not finish (config.json says incomplete); "
                              "run the same `ndcore dissect` command again")
        full_vocab = Vocabulary.load(directory / "vocabulary.json")
        vocab = _category_view(full_vocab, categories, directory)
        options = config.get("options", {})
        layers = {}
        for name in config["layers"]:
            folder = layer_dir(directory, name)
            missing = [f for f in LAYER_FILES if not (folder / f).is_file()]
            if missing:
                raise OutputError(f"{folder}: incomplete layer result (missing {', '.join(missing)})")
            with np.load(folder / "counts.npz") as z:
                counts = {k: z[k] for k in z.files}
            topk = None
            if (folder / "topk.npz").is_file():
                with np.load(folder / "topk.npz") as z:
                    topk = {k: z[k] for k in z.files}
            layers[name] = LayerResult(
                layer=name, vocabulary=vocab, counts=counts,
                thresholds=np.load(folder / "thresholds.npy"),
                union=union or options.get("union", "paper"),
                cutoff=cutoff if cutoff is not None else options.get("cutoff", DEFAULT_CUTOFF),
                full_vocabulary=full_vocab, topk=topk,
                rule=options.get("threshold", "quantile"))
        return cls(layers, vocab, config, directory)

    def relabel(self, union: Optional[str] = None, cutoff: Optional[float] = None,
                categories: Optional[Sequence[str]] = None) -> "DissectionResult":
        """The same counts labelled with another union convention, cut-off or category set."""
        full = next(iter(self.layers.values())).full_vocabulary or self.vocabulary
        vocab = _category_view(full, categories, self.directory)
        layers = {
            name: LayerResult(name, vocab, lr.counts, lr.thresholds, union or lr.union,
                              lr.cutoff if cutoff is None else cutoff, full, lr.topk, lr.rule)
            for name, lr in self.layers.items()
        }
        return DissectionResult(layers, vocab, self.config, self.directory)

    def write_labels(self, directory: Optional[Path] = None) -> None:
        """(Re)write tally.csv and the JSON summaries of every layer, and the run summary."""
        directory = Path(directory or self.directory)
        for name, lr in self.layers.items():
            lr.write(layer_dir(directory, name))
        with open(directory / "summary.json", "w") as f:
            json.dump(self.summary(), f, indent=1)
