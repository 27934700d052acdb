"""Which concepts GANPaint offers at a layer, which units paint each, and the default k.

Units are ranked per concept by their IoU *for that concept* (the concept's column of the
layer's IoU [U, L]; under ``--threshold best-iou`` each (unit, label)'s best IoU), not by the
label each unit is given: a unit labelled ``red`` can still be the best ``black`` unit, and
under best-IoU one large label can win most units' labels (docs/gan-dissection.md).

- **Above chance.** With the run's chance statistics (docs/method.md section 14: ``null_iou95``
  [U, L], from ``--null-permutations``), a unit is above chance for a concept when its IoU for
  it exceeds ``null_iou95``, the IoU a unit that knows nothing reaches at p = 0.05. Without
  them (best-IoU runs, ``--no-null``), when its IoU exceeds the run's IoU cut-off (``--cutoff``,
  0.04 by default).
- **Offered concepts.** Every concept of the vocabulary with at least one unit above chance.
- **Default k.** The above-chance units whose IoU is at least ``K_FRACTION`` of the best
  unit's, at most ``K_CAP``, at least 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    from ..results.result import LayerResult

K_FRACTION = 0.5  # default k: units within half of the best unit's IoU for the concept
K_CAP = 20  # ... but at most 20 (GAN Dissection's ablations use ~20 units of a layer)


@dataclass
class ConceptUnits:
    """One concept GANPaint offers: its units above chance ranked by IoU, and the default k."""

    name: str
    label: int  # its number in the vocabulary (a column of iou.npy)
    category: str
    units: List[int]  # above chance, best IoU first (ties: lower unit first)
    ious: List[float]
    k: int

    @property
    def best_iou(self) -> float:
        return self.ious[0]

    def info(self) -> Dict:
        return {"name": self.name, "units": len(self.units), "k": self.k,
                "best_iou": round(self.best_iou, 4), "category": self.category}


def chance_iou(layer: "LayerResult", run_dir: Optional[Path] = None) -> Optional[np.ndarray]:
    """``null_iou95`` [U, L] of the layer, or None when the run has no chance statistics."""
    sig = getattr(layer, "significance", None)
    if sig is not None and sig.null_iou95_label is not None:
        return np.asarray(sig.null_iou95_label)
    if run_dir is not None:  # written by the run even if this view could not recompute it
        from ..results.result import layer_dir

        path = layer_dir(Path(run_dir), layer.layer) / "chance.npz"
        if path.is_file():
            with np.load(path) as f:
                null = np.asarray(f["null_iou95"])
            if null.shape == layer.iou.shape:
                return null
    return None


def above_chance(iou: np.ndarray, null_iou95: Optional[np.ndarray],
                 cutoff: float) -> np.ndarray:
    """bool [U, L]: the (unit, label) pairs whose IoU beats chance (see the module's doc)."""
    iou = np.asarray(iou, dtype=np.float64)
    floor = np.asarray(null_iou95, dtype=np.float64) if null_iou95 is not None else cutoff
    return (iou > 0) & (iou > floor)


def default_k(ious: List[float], fraction: float = K_FRACTION, cap: int = K_CAP) -> int:
    """How many of ``ious`` (best first) are within ``fraction`` of the best, in 1..cap."""
    if not ious:
        return 1
    near = sum(1 for v in ious if v >= fraction * ious[0])
    return max(1, min(cap, near))


def concept_units(iou: np.ndarray, label_names: List[str], categories: List[str],
                  null_iou95: Optional[np.ndarray], cutoff: float) -> List[ConceptUnits]:
    """The offered concepts, best unit's IoU first (then name). ``categories``: each label's
    category name ('' for none: such labels, and label 0, are never offered)."""
    iou = np.asarray(iou, dtype=np.float64)
    ok = above_chance(iou, null_iou95, cutoff)
    out = []
    for label in range(1, iou.shape[1]):
        if not categories[label]:
            continue
        units = [int(u) for u in np.nonzero(ok[:, label])[0]]
        if not units:
            continue
        units.sort(key=lambda u: (-iou[u, label], u))
        ious = [float(iou[u, label]) for u in units]
        out.append(ConceptUnits(label_names[label], label, categories[label], units, ious,
                                default_k(ious)))
    out.sort(key=lambda c: (-c.best_iou, c.name))
    return out


def ranking(iou_column: np.ndarray, first: List[int]) -> List[int]:
    """Every unit: ``first`` (the concept's units above chance, in order), then the rest by
    IoU for the concept, so that any k from 1 to U picks above-chance units first."""
    rest = sorted(set(range(len(iou_column))) - set(first),
                  key=lambda u: (-float(iou_column[u]), u))
    return list(first) + rest


def layer_concepts(layer: "LayerResult", run_dir: Optional[Path] = None) -> Tuple[List[ConceptUnits], str]:
    """The offered concepts of a :class:`~ndcore.results.LayerResult`, and the rule used
    ('chance' or 'cutoff')."""
    vocab = layer.vocabulary
    cats = ["" if p < 0 else vocab.categories[p] for p in vocab.primary]
    null = chance_iou(layer, run_dir)
    rule = "chance" if null is not None else "cutoff"
    return concept_units(layer.iou, list(vocab.label_names), cats, null, layer.cutoff), rule
