"""From a layer's saved counts to IoUs: intersections, activations and label pixels under each
union convention (docs/method.md sections 4-5), and the IoU of every unit with every label."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ..conventions import UNIONS
from ..data.vocabulary import Vocabulary
from ..errors import NdcoreError, OutputError


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
