"""A run's results: units labelled from saved counts, and the result files (tally.csv, JSON).

A result can be re-labelled with another IoU cut-off, union convention or category subset
without re-running the model: everything here works from :class:`~ndcore.counts.TallyCounts`
state and the vocabulary saved with the run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from urllib.parse import quote

import numpy as np

from ..conventions import DEFAULT_CUTOFF, DEFAULT_FDR
from ..data.vocabulary import Vocabulary
from ..errors import NdcoreError, OutputError
from .iou import iou_matrix
from .significance import Significance, significance, stable_labels


@dataclass
class UnitResult:
    unit: int  # 0-based
    label: str
    category: str
    iou: float
    label_number: int
    by_category: Dict[str, Dict] = field(default_factory=dict)  # cat -> best label of that cat
    ranked: List[Dict] = field(default_factory=list)  # next best labels overall
    # chance and confidence (docs/method.md sections 14-15): p_value, null_iou95, significant,
    # iou_ci, label_stability, as far as the run computed them
    stats: Dict[str, object] = field(default_factory=dict)


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
    # the null's and the bootstrap's counts (resamples.npz), when the run computed them
    resamples: Optional[Dict[str, np.ndarray]] = None
    fdr: float = DEFAULT_FDR
    # what the layer's numbers should be read with (e.g. a threshold resting on a handful of
    # values), as the run recorded them in config.json's "layer_caveats"
    caveats: List[str] = field(default_factory=list)
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
        self.significance: Optional[Significance] = None
        if self.resamples:
            numbers = np.asarray([unit.label_number for unit in self.units], dtype=np.int64)
            self.significance = significance(
                self.iou, numbers, m, self.counts, self.resamples, vocab, self.union,
                self.full_vocabulary or vocab, self.fdr)
            for unit in self.units:
                unit.stats = self.significance.unit(unit.unit, unit.label_number)

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
            "caveats": list(self.caveats),
            **self._significance_summary(),
        }

    def _significance_summary(self) -> Dict:
        sig = self.significance
        if sig is None:
            return {}
        out: Dict = {"null_permutations": sig.permutations, "bootstrap": sig.bootstrap}
        if sig.significant is not None:
            out["fdr"] = sig.fdr
            out["detectors_fdr"] = int(np.count_nonzero(sig.significant))
        if sig.label_stability is not None:
            detector = np.asarray([u.iou > self.cutoff for u in self.units], dtype=bool)
            out["stable_labels"] = stable_labels(sig, detector)
        return out

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
             "threshold": float(self.thresholds[u.unit]), **u.stats}
            for u in self.units
        ]
        with open(directory / "summary.json", "w") as f:
            json.dump({"summary": self.summary(), "units": units}, f, indent=1)
        np.save(directory / "iou.npy", self.iou.astype(np.float32))  # [U, L] for analysis
        sig = self.significance
        if sig is not None and sig.p_label is not None:  # [U, L] for analysis
            np.savez_compressed(directory / "chance.npz", p_value=sig.p_label.astype(np.float64),
                                null_iou95=sig.null_iou95_label.astype(np.float32))


LAYER_FILES = ("counts.npz", "thresholds.npy")


def layer_dir(run_dir: Path, layer: str) -> Path:
    """A layer's folder in a run directory (dotted names and derived layers such as
    ``layer4@rot0.5`` stay readable; '/' etc. are quoted)."""
    return Path(run_dir) / quote(layer, safe="._-@")


def save_layer_counts(directory: Path, counts: Dict[str, np.ndarray], thresholds: np.ndarray,
                      topk: Optional[Dict[str, np.ndarray]],
                      resamples: Optional[Dict[str, np.ndarray]] = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / "counts.npz", **counts)
    if resamples:
        np.savez_compressed(directory / "resamples.npz", **resamples)
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


def _load_npz(path: Path) -> Optional[Dict[str, np.ndarray]]:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


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
             categories: Optional[Sequence[str]] = None,
             fdr: Optional[float] = None) -> "DissectionResult":
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
            topk = _load_npz(folder / "topk.npz")
            layers[name] = LayerResult(
                layer=name, vocabulary=vocab, counts=counts,
                thresholds=np.load(folder / "thresholds.npy"),
                union=union or options.get("union", "paper"),
                cutoff=cutoff if cutoff is not None else options.get("cutoff", DEFAULT_CUTOFF),
                full_vocabulary=full_vocab, topk=topk,
                rule=options.get("threshold", "quantile"),
                resamples=_load_npz(folder / "resamples.npz"),
                fdr=fdr if fdr is not None else options.get("fdr", DEFAULT_FDR),
                caveats=list(config.get("layer_caveats", {}).get(name, [])))
        return cls(layers, vocab, config, directory)

    def relabel(self, union: Optional[str] = None, cutoff: Optional[float] = None,
                categories: Optional[Sequence[str]] = None,
                fdr: Optional[float] = None) -> "DissectionResult":
        """The same counts labelled with another union convention, cut-off, category set or
        false discovery rate."""
        full = next(iter(self.layers.values())).full_vocabulary or self.vocabulary
        vocab = _category_view(full, categories, self.directory)
        layers = {
            name: LayerResult(name, vocab, lr.counts, lr.thresholds, union or lr.union,
                              lr.cutoff if cutoff is None else cutoff, full, lr.topk, lr.rule,
                              lr.resamples, lr.fdr if fdr is None else fdr, lr.caveats)
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
