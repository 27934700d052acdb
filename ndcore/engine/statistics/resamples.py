"""Resampled IoU counts: the null of chance and the bootstrap (statistic "resamples").

docs/method.md sections 14-15. Both come from the maps each batch already has (no forward
pass), fed by the same pass as the layer's counts:

- **the null**: permutation k pairs every image's unit masks with the labels of *another* image
  of its batch (a seeded single-cycle derangement; label planes, image-level labels and
  annotated categories move together, so each label keeps its spatial layout). Kept per (unit,
  label): exact integer sums of the intersections under the real and the permuted pairings and
  of their squares, per batch (:class:`NullMoments`), from which ``results.significance`` bounds
  the p-values;
- **the bootstrap**: in resample b, every image counts ``w ~ Poisson(1)`` times, w drawn from
  (seed, b, probe index) alone. Its counts are the layer's counts (:class:`TallyCounts`) with
  weighted images, from one fused tally per batch that counts every image apart
  (:func:`image_counts`).

The draws depend on the seed and the probe indices only (the derangement also on the batch's
images, fixed by the batch grid), never on the rank, the shard order or a resume, so one
process, several and a resumed run count the same.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ...data.labelspace import LabelSpace
from ...data.probe import ProbeBatch
from ...errors import NdcoreError
from ...results.significance import BOOTSTRAP, NULL
from ..accumulator import check_mergeable
from .counts import (BatchCounts, TallyCounts, batch_counts, batch_intersection, image_counts,
                     pixels_per_image)
from .table import FORWARD_PASS, TALLY_PASS, RunContext, Statistic, register

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of each value (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def _uniforms(seed: int, stream: int, draw: int, indices: np.ndarray) -> np.ndarray:
    """float64 in [0, 1), one per probe index, a function of (seed, stream, draw, index) only."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(stream))
        key = _splitmix64(key ^ np.uint64(draw) * np.uint64(0xD6E8FEB86659FD93))
        bits = _splitmix64(key ^ np.asarray(indices, dtype=np.uint64))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# Poisson(1)'s cumulative probabilities, up to where they reach 1 in float64.
_POISSON_CDF = np.cumsum([np.exp(-1.0) / np.prod(np.arange(1, k + 1, dtype=np.float64))
                          for k in range(20)])


def bootstrap_weights(seed: int, resample: int, indices) -> np.ndarray:
    """int64 [B]: how often each probe index counts in bootstrap resample ``resample``
    (Poisson(1) by inversion of a uniform drawn from (seed, resample, index))."""
    u = _uniforms(seed, 1, resample, np.asarray(indices, dtype=np.int64))
    return np.searchsorted(_POISSON_CDF, u, side="right").astype(np.int64)


def null_partners(seed: int, permutation: int, indices) -> np.ndarray:
    """int64 [B]: for each image of a batch (probe ``indices``), the position in the batch of the
    image whose labels its masks are paired with in null permutation ``permutation``.

    A single-cycle derangement in a seeded random order: no image keeps its own labels (a batch
    of one image has no other and keeps its own), and every image's labels are used once.
    """
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(_uniforms(seed, 0, permutation, indices), kind="stable")
    partners = np.empty(len(indices), dtype=np.int64)
    partners[order] = np.roll(order, -1)
    return partners


def _take(batch: ProbeBatch, rows: torch.Tensor, labels_from: torch.Tensor) -> ProbeBatch:
    """The batch's images ``rows`` with the labels of the images ``labels_from``."""
    return ProbeBatch(batch.indices[rows], batch.images[:0], batch.labels[labels_from],
                      batch.image_labels[labels_from], batch.annotated[labels_from])


class NullMoments:
    """Per (unit, label) of the run's whole vocabulary, what the null's p-values are computed
    from (docs/method.md section 14), as exact integer sums over the batches. With ``g_0`` a
    batch's intersection under the real pairing and ``g_1 .. g_N`` under the N permutations:

    - ``observed``: sum of g_0 (the run's intersections);
    - ``null_sum``: sum of g_1 + ... + g_N;
    - ``square_sum``: sum of g_0^2 + ... + g_N^2;
    - ``batch_sum_square``: sum of (g_0 + ... + g_N)^2 (with ``square_sum``: each batch's spread);
    - ``bound``: the largest min(mask pixels of the unit in one image, pixels of the label in one
      image) of any batch: no image's intersection exceeds it under any pairing.
    """

    def __init__(self, thresholds: torch.Tensor, labelspace: LabelSpace, device,
                 permutations: int, seed: int) -> None:
        self.thresholds = thresholds.to(device, torch.float32)
        self.labelspace = labelspace
        self.permutations, self.seed = int(permutations), int(seed)
        self.device = torch.device(device)
        U, L = self.thresholds.numel(), labelspace.vocabulary.num_labels
        self.num_units = U
        zeros = lambda: torch.zeros(U, L, dtype=torch.int64, device=self.device)  # noqa: E731
        self.observed, self.null_sum, self.square_sum = zeros(), zeros(), zeros()
        self.batch_sum_square, self.bound = zeros(), zeros()
        self._group = torch.as_tensor(labelspace.id_group, dtype=torch.int64, device=self.device)
        # the ids that count for their label under the run's categories (all but id 0)
        kept = np.nonzero(labelspace.label_matrix(labelspace.vocabulary.categories).any(1))[0]
        self._kept_ids = torch.as_tensor(kept, dtype=torch.int64, device=self.device)
        self._id_label = torch.as_tensor(labelspace.id_label[kept], dtype=torch.int64,
                                         device=self.device)
        self.num_labels = L
        self._identity = labelspace.is_identity

    def _by_label(self, ids: torch.Tensor) -> torch.Tensor:
        """[..., V] counts per label-space id -> [..., L] per label (each label's ids summed)."""
        if self._identity:  # every label one id, its own number; id 0 is no label
            out = ids.clone()
            out[..., 0] = 0
            return out
        out = torch.zeros(*ids.shape[:-1], self.num_labels, dtype=torch.int64, device=self.device)
        return out.index_add_(-1, self._id_label, ids.index_select(-1, self._kept_ids))

    def add(self, maps: torch.Tensor, batch: ProbeBatch, real: BatchCounts,
            pixels: Optional[torch.Tensor] = None) -> None:
        """Adds a batch whose counts under the real pairing are ``real`` (and its images'
        pixels per id, :func:`pixels_per_image`, when the caller has them)."""
        ls = self.labelspace
        g = self._by_label(real.intersection)
        self.observed += g
        draws_sum, draws_square = g.clone(), g * g
        indices = batch.indices.cpu().numpy()
        rows = torch.arange(len(indices), device=self.device)
        for k in range(self.permutations):
            partners = torch.as_tensor(null_partners(self.seed, k, indices), device=self.device)
            paired = batch_intersection(maps, self.thresholds, _take(batch, rows, partners), ls,
                                        self._group)[0]
            g = self._by_label(paired)
            self.null_sum += g
            draws_sum += g
            draws_square += g * g
        self.square_sum += draws_square
        self.batch_sum_square += draws_sum * draws_sum
        # no image's intersection, under any pairing, exceeds its largest mask and label
        if pixels is None:
            pixels = pixels_per_image(batch, ls.num_ids)
        label_pixels = self._by_label(pixels).amax(0)  # [L]
        mask_pixels = real.area.amax(0)  # [U]
        self.bound = torch.maximum(self.bound, torch.minimum(mask_pixels[:, None],
                                                             label_pixels[None, :]))

    def merge(self, other: "NullMoments") -> None:
        check_mergeable(self, other, num_units=self.num_units, permutations=self.permutations,
                        seed=self.seed)
        for name in ("observed", "null_sum", "square_sum", "batch_sum_square"):
            getattr(self, name).add_(getattr(other, name).to(self.device))
        self.bound = torch.maximum(self.bound, other.bound.to(self.device))

    def state_dict(self) -> Dict[str, Any]:
        return {"permutations": np.asarray(self.permutations), "seed": np.asarray(self.seed),
                "thresholds": self.thresholds.cpu().numpy(),
                **{name: getattr(self, name).cpu().numpy() for name in MOMENTS}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name in MOMENTS:
            setattr(self, name, torch.tensor(np.asarray(state[name]), device=self.device))


MOMENTS = ("observed", "null_sum", "square_sum", "batch_sum_square", "bound")


class Resamples:
    """The null's moments (``permutations`` > 0) and the counts of ``bootstrap`` resamples of
    one layer."""

    def __init__(self, thresholds: torch.Tensor, labelspace: LabelSpace, device,
                 permutations: int, bootstrap: int, seed: int, lite: bool = True) -> None:
        self.permutations, self.bootstrap, self.seed = int(permutations), int(bootstrap), int(seed)
        self.num_units = int(thresholds.numel())
        self.device = torch.device(device)
        self.null = (NullMoments(thresholds, labelspace, device, permutations, seed)
                     if permutations else None)
        # NetDissect-Lite's activation counts only for a run under its union (they cost most)
        self.boot: List[TallyCounts] = [TallyCounts(thresholds, labelspace, device, lite=lite)
                                        for _ in range(self.bootstrap)]
        self.thresholds = thresholds.to(self.device, torch.float32)
        self.labelspace = labelspace
        self._group = torch.as_tensor(labelspace.id_group, dtype=torch.int64, device=self.device)

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        batch = batch.to(self.device)
        ls = self.labelspace
        if not self.boot:
            self.null.add(maps, batch, batch_counts(maps, self.thresholds, batch, ls,
                                                    self._group))
            return
        images = image_counts(maps, self.thresholds, batch, ls, self._group)
        if self.null is not None:
            self.null.add(maps, batch, images.batch, images.pixels)
        lite = self.boot[0].lite_terms(images.batch) if self.boot[0].lite else None
        indices = batch.indices.cpu().numpy()
        for b, counts in enumerate(self.boot):
            weights = torch.as_tensor(bootstrap_weights(self.seed, b, indices), device=self.device)
            counts.add_images(images, batch, weights, lite)

    def merge(self, other: "Resamples") -> None:
        check_mergeable(self, other, num_units=self.num_units, permutations=self.permutations,
                        bootstrap=self.bootstrap, seed=self.seed)
        if self.null is not None:
            self.null.merge(other.null)
        for mine, theirs in zip(self.boot, other.boot):
            mine.merge(theirs)

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {"permutations": np.asarray(self.permutations),
                                 "bootstrap": np.asarray(self.bootstrap),
                                 "seed": np.asarray(self.seed),
                                 "thresholds": self.thresholds.cpu().numpy()}
        if self.null is not None:
            for key, value in self.null.state_dict().items():
                state[f"{NULL}.{key}"] = value
        for k, counts in enumerate(self.boot):
            for key, value in counts.state_dict().items():
                if not key.startswith("labelspace_"):  # the layer's counts hold it once
                    state[f"{BOOTSTRAP}{k}.{key}"] = value
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.null is not None:
            self.null.load_state_dict({key[len(NULL) + 1:]: value for key, value in state.items()
                                       if key.startswith(f"{NULL}.")})
        for k, counts in enumerate(self.boot):
            mark = f"{BOOTSTRAP}{k}."
            counts.load_state_dict({key[len(mark):]: value for key, value in state.items()
                                    if key.startswith(mark)})


def stacked(state: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """A final state as resamples.npz holds it: the null's moments (``null.observed``, ...,
    ``null.permutations``), and per bootstrap count its resamples stacked (``boot.intersection``
    [B, U, V], ...), the annotation patterns of the paper's union aligned on the union of all
    resamples' patterns (absent ones count 0)."""
    out: Dict[str, np.ndarray] = {"seed": np.asarray(state["seed"])}
    if int(state["permutations"]):
        out[f"{NULL}.permutations"] = np.asarray(state["permutations"])
        for name in MOMENTS:
            out[f"{NULL}.{name}"] = np.asarray(state[f"{NULL}.{name}"])
    size = int(state["bootstrap"])
    if size:
        parts = [{key.split(".", 1)[1]: value for key, value in state.items()
                  if key.startswith(f"{BOOTSTRAP}{k}.")} for k in range(size)]
        patterns = np.unique(np.concatenate([np.asarray(p["patterns"], dtype=np.int64)
                                             for p in parts]))
        area = np.zeros((size, parts[0]["intersection"].shape[0], len(patterns)), np.int64)
        for k, p in enumerate(parts):
            columns = np.searchsorted(patterns, np.asarray(p["patterns"], dtype=np.int64))
            area[k][:, columns] = np.asarray(p["area_by_pattern"])
        for key in ("intersection", "truth", "act_lite", "num_images"):
            out[f"{BOOTSTRAP}.{key}"] = np.stack([np.asarray(p[key]) for p in parts])
        if "lite_counted" in parts[0]:
            out[f"{BOOTSTRAP}.lite_counted"] = np.asarray(False)
        out[f"{BOOTSTRAP}.patterns"] = patterns
        out[f"{BOOTSTRAP}.area_by_pattern"] = area
    return out


def _make(run: RunContext, layer: str, maps: torch.Tensor,
          batch: ProbeBatch) -> Optional[Resamples]:
    options = run.options
    thresholds = run.thresholds.get(layer)
    if thresholds is None or not (options.null_permutations or options.bootstrap):
        return None
    if thresholds.numel() != maps.shape[1]:
        raise NdcoreError(f"layer {layer!r} has {maps.shape[1]} units but its thresholds have "
                          f"{thresholds.numel()} values")
    return Resamples(thresholds, run.labelspace, run.device, options.null_permutations,
                     options.bootstrap, options.resample_seed, lite=options.union == "lite")


def _restore(run: RunContext, state: Dict[str, Any]) -> Resamples:
    return Resamples(torch.as_tensor(state["thresholds"]), run.labelspace, run.device,
                     int(state["permutations"]), int(state["bootstrap"]), int(state["seed"]),
                     lite=f"{BOOTSTRAP}0.lite_counted" not in state)


register(Statistic("resamples", Resamples, passes=(FORWARD_PASS, TALLY_PASS), make=_make,
                   restore=_restore, record="resamples", output=lambda r: stacked(r.state_dict())))
