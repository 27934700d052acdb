"""Chance and confidence of a layer's labels, from its resampled counts (resamples.npz).

docs/method.md sections 14-15. Every resample's counts are labelled exactly as the run's own
(same union, categories and threshold rule), so all of this follows a relabelled result:

- **chance**: per (unit, label) the null IoUs of N permutations; a normal fitted to them gives a
  p-value by the t prediction rule (the observed IoU is one more draw from that normal: its
  standardised distance from the null's mean, over sd * sqrt(1 + 1/N), is Student-t with N - 1
  degrees of freedom) and ``null_iou95``, the IoU with p = 0.05. A unit's ``p_value`` is its best
  label's, times the number of labels it was chosen from (Bonferroni: the best of many labels is
  tested); Benjamini-Hochberg across the layer's units at the FDR ``q`` gives the significant
  detectors.
- **confidence**: per unit, the 2.5th and 97.5th percentiles of its best label's IoU over the
  bootstrap resamples (``iou_ci``), and the share of resamples whose best label is the same
  (``label_stability``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, Optional

import numpy as np

from ..conventions import STABLE_LABEL
from ..data.vocabulary import Vocabulary
from .iou import iou_matrix

NULL, BOOTSTRAP = "null", "boot"  # the families of resamples.npz (ndcore.engine.statistics)


@dataclass
class Significance:
    """Per unit (``U``) and per (unit, label) (``[U, L]``) statistics of one layer's labels;
    the null's fields are None without a null, the bootstrap's without a bootstrap."""

    permutations: int
    bootstrap: int
    fdr: float
    p_label: Optional[np.ndarray] = None  # [U, L] each label's p-value
    null_iou95_label: Optional[np.ndarray] = None  # [U, L] the IoU chance reaches at p = 0.05
    p_value: Optional[np.ndarray] = None  # [U] the best label's, Bonferroni over its candidates
    significant: Optional[np.ndarray] = None  # [U] bool: Benjamini-Hochberg at ``fdr``
    iou_ci: Optional[np.ndarray] = None  # [U, 2] 95% percentile interval of the best label's IoU
    label_stability: Optional[np.ndarray] = None  # [U] share of resamples with the same label
    note: Optional[str] = None  # why a statistic the run has could not be computed here

    def unit(self, u: int, label: int) -> Dict[str, object]:
        """The per-unit fields of summary.json (None where not computed or undefined)."""
        has_label = label > 0
        out: Dict[str, object] = {}
        if self.p_value is not None:
            out["p_value"] = float(self.p_value[u])
            out["null_iou95"] = float(self.null_iou95_label[u, label]) if has_label else None
            out["significant"] = bool(self.significant[u])
        if self.iou_ci is not None:
            out["iou_ci"] = [float(v) for v in self.iou_ci[u]] if has_label else None
            out["label_stability"] = float(self.label_stability[u])
        return out


def resample_counts(resamples: Dict[str, np.ndarray], family: str,
                    counts: Dict[str, np.ndarray]) -> Iterator[Dict[str, np.ndarray]]:
    """Each resample of ``family`` as a counts dict (with the layer's label-space keys)."""
    shared = {k: v for k, v in counts.items() if k.startswith("labelspace_")}
    size = resamples[f"{family}.intersection"].shape[0] if f"{family}.intersection" in \
        resamples else 0
    for k in range(size):
        yield {"intersection": resamples[f"{family}.intersection"][k],
               "truth": resamples[f"{family}.truth"][k],
               "act_lite": resamples[f"{family}.act_lite"][k],
               "num_images": resamples[f"{family}.num_images"][k],
               "patterns": resamples[f"{family}.patterns"],
               "area_by_pattern": resamples[f"{family}.area_by_pattern"][k], **shared}


def best_labels(iou: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """int [U]: each unit's label number as :class:`LayerResult` chooses it (the first best
    label of each category; the best category, ties to the later one; 0 where no IoU > 0)."""
    values, labels = [], []
    for c in range(len(vocab.categories)):
        members = np.nonzero(vocab.primary == c)[0]
        if members.size == 0:
            values.append(np.zeros(iou.shape[0]))
            labels.append(np.zeros(iou.shape[0], dtype=np.int64))
            continue
        pick = np.argmax(iou[:, members], axis=1)
        values.append(iou[np.arange(iou.shape[0]), members[pick]])
        labels.append(members[pick])
    values, labels = np.stack(values), np.stack(labels)  # [C, U]
    last_best = len(values) - 1 - np.argmax(values[::-1], axis=0)  # ties: the later category
    units = np.arange(iou.shape[0])
    return np.where(values[last_best, units] > 0, labels[last_best, units], 0)


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """bool [n]: the hypotheses rejected at false discovery rate ``q`` (step-up procedure)."""
    n = p.size
    order = np.argsort(p, kind="stable")
    passes = p[order] <= q * np.arange(1, n + 1) / n
    rejected = np.zeros(n, dtype=bool)
    if passes.any():
        rejected[order[:np.nonzero(passes)[0][-1] + 1]] = True
    return rejected


def bennett_h(u: np.ndarray) -> np.ndarray:
    """h(u) = (1 + u) log(1 + u) - u, the exponent of Bennett's inequality."""
    return (1.0 + u) * np.log1p(u) - u


def _bennett_inverse(c: np.ndarray) -> np.ndarray:
    """The u >= 0 with h(u) = c (c >= 0), by Newton's method from above (h is convex and
    increasing, and h(c + 10) >= c, so the iterates fall monotonically onto the root)."""
    u = c + 10.0
    for _ in range(100):
        step = (bennett_h(u) - c) / np.maximum(np.log1p(u), 1e-300)
        u = np.maximum(u - step, 0.0)
        if np.all(np.abs(step) <= 1e-12 * np.maximum(u, 1.0)):
            break
    return u


def chance(moments: Dict[str, np.ndarray], activation: np.ndarray,
           truth: np.ndarray) -> Dict[str, np.ndarray]:
    """Per (unit, label): the p-value of the observed intersection under the null, and the IoU
    chance reaches at p = 0.05 (the union's other terms, ``activation`` [U, L] and ``truth``
    [L], as observed). ``moments`` are the null's sums (``null.*`` of resamples.npz).

    Under the null, the observed intersection minus the null's mean is a sum of per-image
    intersections, each at most ``bound`` b (an image's largest mask or label), whose variance V
    is estimated from every batch's N + 1 pairings (the observed one among them: under the null
    it is one more draw), plus the null mean's own variance V / N. Bennett's inequality bounds
    the upper tail of such a sum: P(X - mean >= t) <= exp(-(V / b^2) h(b t / V)). Unlike a
    normal tail, it stays honest for sparse labels, whose intersections come in a few large
    lumps (docs/method.md section 14 says what is and is not guaranteed).
    """
    n = int(moments["null.permutations"])
    observed = moments["null.observed"].astype(np.float64)
    mean = moments["null.null_sum"] / n
    draws = n + 1
    # each batch's unbiased variance over its n + 1 pairings, summed: exact in integers first
    spread = (moments["null.square_sum"] * draws - moments["null.batch_sum_square"]) \
        .astype(np.float64) / (draws * n)
    variance = np.maximum(spread, 0.0) * (1.0 + 1.0 / n)
    bound = moments["null.bound"].astype(np.float64)
    excess = observed - mean
    defined = (variance > 0) & (bound > 0)
    safe_v, safe_b = np.where(defined, variance, 1.0), np.where(defined, bound, 1.0)
    exponent = safe_v / safe_b ** 2 * bennett_h(np.maximum(excess, 0.0) * safe_b / safe_v)
    p = np.where(defined & (excess > 0), np.exp(-exponent), 1.0)
    # the intersection at which the bound reaches 0.05, as an IoU with the observed union terms
    reach = _bennett_inverse(np.log(20.0) * safe_b ** 2 / safe_v) * safe_v / safe_b
    inter95 = mean + np.where(defined, reach, 0.0)
    union = activation + truth[None, :] - inter95
    with np.errstate(divide="ignore", invalid="ignore"):
        iou95 = np.where(union > 0, inter95 / np.where(union > 0, union, 1.0), 0.0)
    return {"p": p, "iou95": np.clip(iou95, 0.0, 1.0)}


def significance(observed: np.ndarray, labels: np.ndarray, matrix: Dict[str, np.ndarray],
                 counts: Dict[str, np.ndarray], resamples: Dict[str, np.ndarray],
                 vocab: Vocabulary, union: str, full_vocab: Vocabulary,
                 fdr: float) -> Significance:
    """The statistics of a layer whose IoUs are ``observed`` [U, L], with their counts
    ``matrix`` (:func:`iou_matrix`'s), and units' label numbers ``labels`` [U] (0: none), from
    its ``resamples`` (resamples.npz)."""
    intersection, activation = matrix["intersection"], matrix["activation"]
    truth = matrix["truth"]

    def ious(family: str) -> Iterator[np.ndarray]:
        for part in resample_counts(resamples, family, counts):
            yield iou_matrix(part, vocab, union, full_vocab)["iou"]

    units = np.arange(observed.shape[0])
    has_label = labels > 0
    permutations = int(resamples.get(f"{NULL}.permutations", 0))
    boot_size = resamples[f"{BOOTSTRAP}.intersection"].shape[0] \
        if f"{BOOTSTRAP}.intersection" in resamples else 0
    out = Significance(permutations=permutations, bootstrap=boot_size, fdr=fdr)
    if permutations and not np.array_equal(intersection, resamples[f"{NULL}.observed"]):
        # The null's sums are per label of the run's categories; a view restricted to fewer
        # categories counts some labels' pixels differently, and its p-values are unknown.
        out.note = ("chance: p-values are computed for the run's categories only "
                    f"({', '.join(full_vocab.categories)})")
    elif permutations:
        fitted = chance(resamples, activation, truth)
        # the labels a unit's best is chosen from: those with a category and any pixels
        candidates = int(np.count_nonzero((vocab.primary >= 0) & (truth > 0)
                                          & (np.arange(len(truth)) > 0)))
        best_p = fitted["p"][units, labels]
        out.p_label, out.null_iou95_label = fitted["p"], fitted["iou95"]
        out.p_value = np.where(has_label, np.minimum(1.0, max(candidates, 1) * best_p), 1.0)
        out.significant = benjamini_hochberg(out.p_value, fdr) & has_label
    if boot_size and union == "lite" and f"{BOOTSTRAP}.lite_counted" in resamples:
        # the resamples kept no NetDissect-Lite activation counts (the run had another union)
        out.note = "; ".join(filter(None, [out.note, (
            "confidence: the bootstrap kept the counts of the run's union only; relabelled "
            "to --union lite it has no intervals (dissect with --union lite for them)")]))
    elif boot_size:
        same = np.zeros(len(units))
        values = []
        for iou in ious(BOOTSTRAP):
            values.append(iou[units, labels])
            same += best_labels(iou, vocab) == labels
        values = np.stack(values)  # [B, U]
        ci = np.percentile(values, [2.5, 97.5], axis=0).T
        out.iou_ci = np.where(has_label[:, None], ci, 0.0)
        out.label_stability = same / boot_size
    return out


def stable_labels(sig: Significance, detector: np.ndarray) -> Optional[int]:
    """How many detectors keep their label in at least STABLE_LABEL of the resamples."""
    if sig.label_stability is None:
        return None
    return int(np.count_nonzero(detector & (sig.label_stability >= STABLE_LABEL)))
