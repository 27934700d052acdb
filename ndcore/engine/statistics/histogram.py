"""The best-IoU threshold rule (GAN Dissection): per (unit, concept), the threshold that
maximises IoU over the whole sample set, searched over a grid of candidate thresholds.

Two accumulators:

- :class:`ValueSample` (pass 1): per unit, the values of a fixed, spread-out subset of the
  probe images (every stride-th image, every step-th map cell), kept sorted; the candidate
  thresholds ("edges") are quantiles of it, plus the unit's exact top-quantile threshold.
- :class:`IoUHistogram` (pass 2): per unit and label-space id, the histogram of the upsampled
  activations over the edges (the fused op ``ndcore::iou_histogram``). Its suffix sums are the
  exact intersection and mask area at every edge, so IoU as a function of the threshold is
  known for every unit and concept: the best one, and the curve the report draws.

Both have canonical states (sorted values; integer sums), so they merge exactly. Statistics
"sample" (dropped once the edges are known) and "hist" (kept in the layer's counts.npz as
``hist_edges`` and ``hist``), made under ``--threshold best-iou`` only.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np
import torch

from ...data.probe import ProbeBatch
from ...ops import iou_histogram
from ..accumulator import check_mergeable
from .table import FORWARD_PASS, TALLY_PASS, RunContext, Statistic, register

SAMPLE_IMAGES = 256  # images sampled per unit, at most
SAMPLE_CELLS = 64  # map cells sampled per image, at most
EDGES = 256  # candidate thresholds per unit


class ValueSample:
    """Per unit, the sorted values of images i with i % stride == 0 (every ``step``-th cell)."""

    def __init__(self, num_units: int, stride: int, step: int) -> None:
        self.num_units, self.stride, self.step = num_units, stride, step
        self.values = torch.empty(num_units, 0)

    @classmethod
    def for_run(cls, num_units: int, images: int, cells: int) -> "ValueSample":
        return cls(num_units, max(1, math.ceil(images / SAMPLE_IMAGES)),
                   max(1, math.ceil(cells / SAMPLE_CELLS)))

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        rows = (batch.indices.to(maps.device) % self.stride) == 0
        if not bool(rows.any()):
            return
        picked = maps[rows].flatten(2)[:, :, :: self.step]  # [b, U, cells]
        new = picked.transpose(0, 1).reshape(self.num_units, -1).float().cpu()
        self.values = torch.sort(torch.cat([self.values, new], 1), dim=1).values

    def merge(self, other: "ValueSample") -> None:
        check_mergeable(self, other, num_units=self.num_units, stride=self.stride,
                        step=self.step)
        self.values = torch.sort(torch.cat([self.values, other.values], 1), dim=1).values

    def state_dict(self) -> Dict:
        return {"num_units": self.num_units, "stride": self.stride, "step": self.step,
                "values": self.values.contiguous()}

    def load_state_dict(self, state: Dict) -> None:
        self.num_units, self.stride, self.step = (int(state["num_units"]), int(state["stride"]),
                                                  int(state["step"]))
        self.values = torch.as_tensor(state["values"]).clone()

    def edges(self, threshold: torch.Tensor, count: int = EDGES) -> torch.Tensor:
        """[U, count] strictly increasing candidate thresholds: quantiles of the sample,
        denser towards the top, with the unit's top-quantile ``threshold`` among them."""
        levels = 1.0 - np.geomspace(1.0, 1e-4, count - 1)  # 0 .. 0.9999
        values = self.values.double().numpy()
        out = np.empty((self.num_units, count), dtype=np.float64)
        for u in range(self.num_units):
            q = np.quantile(values[u], levels) if values.shape[1] else np.zeros(count - 1)
            out[u] = np.sort(np.append(q, float(threshold[u])))
        edges = torch.from_numpy(out).float()
        for j in range(1, count):  # ties (e.g. many zeros) -> the next float up
            edges[:, j] = torch.maximum(edges[:, j], torch.nextafter(
                edges[:, j - 1], torch.full_like(edges[:, j - 1], math.inf)))
        return edges


class IoUHistogram:
    """hist [U, V, B]: mask pixels of unit u with label-space id v (v = 0: every pixel) whose
    upsampled activation lies in (edges[u, j], edges[u, j+1]]."""

    def __init__(self, edges: torch.Tensor, num_ids: int, device="cpu") -> None:
        self.device = torch.device(device)
        self.edges = edges.to(self.device, torch.float32).contiguous()
        self.num_units, self.num_bins = self.edges.shape
        self.num_ids = num_ids
        self.hist = torch.zeros(self.num_units, num_ids, self.num_bins, dtype=torch.int64,
                                device=self.device)

    def add(self, maps: torch.Tensor, batch: ProbeBatch) -> None:
        labels = batch.labels.to(self.device)
        image_labels = batch.image_labels.to(self.device)
        valid = batch.annotated.any(1).to(self.device) if batch.annotated.shape[1] else None
        if valid is not None and not bool(valid.all()):  # unlabelled samples count nowhere
            maps, labels, image_labels = maps[valid], labels[valid], image_labels[valid]
        if maps.shape[0]:
            self.hist += iou_histogram(maps, self.edges, labels, self.num_ids)
            self._add_image_labels(maps, image_labels, tuple(labels.shape[-2:]))

    def _add_image_labels(self, maps: torch.Tensor, image_labels: torch.Tensor,
                          label_size) -> None:
        """An image-level label (scene, texture) covers its whole image: its histogram gains the
        image's whole-mask histogram. One more op call over the images that have one, each
        image's pixels labelled with an id of its own (k + 1 for the k-th), gives those."""
        rows = (image_labels > 0).any(1).nonzero().reshape(-1)
        if rows.numel() == 0:
            return
        sh, sw = label_size
        own = (torch.arange(rows.numel(), device=self.device, dtype=torch.int32) + 1)
        planes = own[:, None, None, None].expand(-1, 1, sh, sw).contiguous()
        per_image = iou_histogram(maps[rows], self.edges, planes, rows.numel() + 1)  # [U, K+1, B]
        k, q = (image_labels[rows] > 0).nonzero(as_tuple=True)
        self.hist.index_add_(1, image_labels[rows][k, q], per_image[:, k + 1, :])

    def merge(self, other: "IoUHistogram") -> None:
        check_mergeable(self, other, num_units=self.num_units, num_bins=self.num_bins,
                        num_ids=self.num_ids)
        if not torch.equal(self.edges.cpu(), other.edges.cpu()):
            raise ValueError("cannot merge IoUHistograms over different edges")
        self.hist += other.hist.to(self.device)

    def state_dict(self) -> Dict:
        return {"edges": self.edges.cpu(), "hist": self.hist.cpu(), "num_ids": self.num_ids}

    def load_state_dict(self, state: Dict) -> None:
        self.edges = torch.as_tensor(state["edges"]).to(self.device, torch.float32).clone()
        self.num_units, self.num_bins = self.edges.shape
        self.num_ids = int(state["num_ids"])
        self.hist = torch.as_tensor(state["hist"]).to(self.device).clone()


def _best_iou(run: RunContext) -> bool:
    return run.options.threshold == "best-iou"


def _make_sample(run: RunContext, layer: str, maps: torch.Tensor,
                 batch: ProbeBatch) -> Optional[ValueSample]:
    if not _best_iou(run) or layer in run.thresholds:
        return None
    return ValueSample.for_run(maps.shape[1], run.images, maps.shape[2] * maps.shape[3])


def _make_histogram(run: RunContext, layer: str, maps: torch.Tensor,
                    batch: ProbeBatch) -> Optional[IoUHistogram]:
    if not _best_iou(run) or layer not in run.edges:
        return None
    return IoUHistogram(run.edges[layer], run.labelspace.num_ids, run.device)


def _histogram_output(histogram: IoUHistogram) -> Dict[str, Any]:
    state = histogram.state_dict()
    return {"hist_edges": state["edges"].numpy(), "hist": state["hist"].numpy()}


register(Statistic(
    "sample", ValueSample, passes=(FORWARD_PASS,), make=_make_sample,
    restore=lambda run, state: ValueSample(int(state["num_units"]), int(state["stride"]),
                                           int(state["step"]))))
register(Statistic(
    "hist", IoUHistogram, passes=(TALLY_PASS,), make=_make_histogram, record="counts",
    output=_histogram_output,
    restore=lambda run, state: IoUHistogram(torch.as_tensor(state["edges"]),
                                            int(state["num_ids"]), run.device)))
