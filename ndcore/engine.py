"""The dissection engine: pass 1 (exact thresholds), pass 2 (fused tally), results.

    probe batches -> model + layer capture -> pass 1: per-unit top quantile
                                           -> pass 2: fused op (upsample, threshold, count)
                                           -> counts -> labels, summaries, files
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import __version__
from .cache import SparseMapCache, below_threshold_fill, default_memory_budget
from .capture import LayerCapture
from .counts import TallyCounts
from .data.probe import ProbeBatch, ProbeError, ProbeSource, collate_probe_items
from .errors import ActivationError, DatasetError, NdcoreError, OutputError
from .models import ModelAdapter, sha256_of
from .ops import extension_info, tally, upsample_bilinear
from .progress import progress_bar
from .results import (DEFAULT_CUTOFF, UNIONS, DissectionResult, LayerResult, layer_dir,
                      save_layer_counts)
from .stats import TopKImages, TopTail, tail_size


@dataclass
class DissectOptions:
    union: str = "paper"
    quantile: float = 0.005
    cutoff: float = DEFAULT_CUTOFF
    categories: Optional[List[str]] = None
    thresholds: Dict[str, str] = field(default_factory=dict)  # layer -> .npy file
    quantile_on: str = "raw"  # "raw" (layer maps) or "upsampled" (label-resolution maps)
    batch_size: int = 32
    device: str = "cpu"
    workers: int = 0
    topk: int = 10
    max_images: Optional[int] = None
    second_pass: str = "auto"  # "cache" (keep candidate maps on disk), "forward", or "auto"
    cache_dir: Optional[str] = None
    cache_memory_mb: Optional[float] = None  # kept maps held in memory first (default: per device)

    def validate(self) -> None:
        if self.union not in UNIONS:
            raise NdcoreError(f"--union {self.union!r}: choose one of {', '.join(UNIONS)}")
        if not 0.0 < self.quantile < 1.0:
            raise NdcoreError(f"--quantile {self.quantile}: must lie strictly between 0 and 1")
        if self.quantile_on not in ("raw", "upsampled"):
            raise NdcoreError("quantile_on must be 'raw' or 'upsampled'")
        if self.second_pass not in ("auto", "cache", "forward"):
            raise NdcoreError("--second-pass must be auto, cache or forward")
        if self.batch_size < 1:
            raise NdcoreError("--batch-size must be >= 1")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NdcoreError("--device cuda: no CUDA GPU is available to torch")


def _unwrap_worker_error(e: Exception) -> str:
    """DataLoader re-raises worker errors with the worker traceback in the message."""
    msg = str(e).strip()
    if "Original Traceback" in msg:
        msg = msg.splitlines()[-1]
        msg = msg.split(": ", 1)[1] if ": " in msg else msg
    return msg


class Dissection:
    """One dissection run of a model's layers over a probe source."""

    def __init__(self, model: ModelAdapter, layers: Sequence[str], source: ProbeSource,
                 options: DissectOptions, out: Optional[Path] = None, quiet: bool = False) -> None:
        options.validate()
        if not layers:
            raise NdcoreError("no layers to dissect: give --layers L1,L2")
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.source = source
        self.options = options
        self.out = Path(out) if out is not None else None
        self.quiet = quiet
        self.device = torch.device(options.device)
        self.vocab = source.vocabulary
        if len(source) == 0:
            raise DatasetError(f"{source.info.spec}: the dataset has no images")
        unknown = [l for l in options.thresholds if l not in self.layers]
        if unknown:
            raise NdcoreError(f"--thresholds names layer {unknown[0]!r}, which is not in --layers")
        LayerCapture(model.module, self.layers)  # validates the names now, before any work

    # -- data --------------------------------------------------------------------------------

    def batches(self) -> Iterator[ProbeBatch]:
        loader = torch.utils.data.DataLoader(
            self.source, batch_size=self.options.batch_size, shuffle=False,
            num_workers=self.options.workers, collate_fn=collate_probe_items,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (ProbeError, DatasetError) as e:  # from the collate fn or a worker
                raise DatasetError(_unwrap_worker_error(e)) from None
            yield batch.to(self.device, non_blocking=True)

    def forward(self, capture: LayerCapture, batch: ProbeBatch) -> Dict[str, torch.Tensor]:
        x = self.model.preprocess(batch.images)
        with torch.no_grad():
            outputs = capture(x)
        acts = {}
        for name, a in outputs.items():
            a = a.detach().float()
            if not bool(torch.isfinite(a).all()):
                bad = (~torch.isfinite(a)).any(dim=(2, 3))
                units = sorted(set(bad.nonzero()[:, 1].tolist()))
                images = sorted(set(batch.indices[bad.any(1)].tolist()))
                raise ActivationError(
                    f"layer {name!r}: NaN or Inf activations in unit(s) {units[:10]} on "
                    f"image(s) {images[:10]} (check the weights and the input normalisation)"
                )
            acts[name] = a
        return acts

    # -- passes ------------------------------------------------------------------------------

    def _given_thresholds(self) -> Dict[str, torch.Tensor]:
        given = {}
        for layer, path in self.options.thresholds.items():
            try:
                values = np.load(path)
            except Exception as e:
                raise NdcoreError(f"--thresholds {layer}={path}: cannot load ({e})") from None
            given[layer] = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        return given

    def _tally(self, name: str, acts: torch.Tensor, threshold: torch.Tensor, batch: ProbeBatch,
               counts: Dict[str, TallyCounts]) -> None:
        if acts.shape[1] != threshold.numel():
            raise NdcoreError(f"layer {name!r} has {acts.shape[1]} units but its thresholds have "
                              f"{threshold.numel()} values")
        if name not in counts:
            counts[name] = TallyCounts(acts.shape[1], self.vocab, device=self.device)
        out = tally(acts, threshold, batch.labels, self._label_category,
                    self.vocab.num_labels, self.vocab.num_categories)
        counts[name].add(batch, *out)

    def _choose_second_pass(self, acts: Dict[str, torch.Tensor], todo: Sequence[str]) -> str:
        """'cache' (keep candidate maps on disk) or 'forward' (run the model again)."""
        mode = self.options.second_pass
        if mode != "auto":
            return mode
        per_image = sum(acts[l][0].numel() * 4 + 8 * acts[l].shape[1] for l in todo)
        worst = per_image * len(self.source)
        free = shutil.disk_usage(self.options.cache_dir or tempfile.gettempdir()).free
        return "cache" if worst < 0.5 * free else "forward"

    def passes(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, TallyCounts], Dict[str, TopKImages]]:
        """Pass 1: every layer in one forward pass (thresholds, top-k images, and the tally of
        layers whose thresholds are given). Pass 2: the tally of the others, from the kept maps
        or from a second forward pass."""
        given = {k: v.to(self.device) for k, v in self._given_thresholds().items()}
        todo = [l for l in self.layers if l not in given]
        n = len(self.source)
        self._label_category = torch.as_tensor(self.vocab.primary, dtype=torch.int64,
                                               device=self.device)
        counts: Dict[str, TallyCounts] = {}
        topk: Dict[str, TopKImages] = {}
        tails: Dict[str, TopTail] = {}
        cache: Optional[SparseMapCache] = None
        self.second_pass = "none" if not todo else None
        # Pass 1 needs label planes only to tally layers whose thresholds are given.
        self.source.load_labels = bool(given)
        try:
            with LayerCapture(self.model.module, self.layers) as capture, \
                    progress_bar(not self.quiet) as bar:
                title = "pass 1/2: forward, thresholds" if todo else "single pass: forward, tally"
                task = bar.add_task(title, total=n)
                for batch in self.batches():
                    acts = self.forward(capture, batch)
                    if self.second_pass is None:
                        self.second_pass = self._choose_second_pass(acts, todo)
                        if self.second_pass == "cache":
                            budget = self.options.cache_memory_mb
                            budget = default_memory_budget(self.device) if budget is None \
                                else int(budget * 2**20)
                            cache = SparseMapCache(self.options.cache_dir, budget)
                    for name, a in acts.items():
                        if name not in topk:
                            topk[name] = TopKImages(a.shape[1], self.options.topk)
                        topk[name].add(a, batch.indices)
                        if name in given:
                            self._tally(name, a, given[name], batch, counts)
                            continue
                        sample = upsample_bilinear(a, batch.label_size) \
                            if self.options.quantile_on == "upsampled" else a
                        if name not in tails:
                            per_unit = n * sample.shape[2] * sample.shape[3]
                            tails[name] = TopTail(a.shape[1], tail_size(per_unit, self.options.quantile),
                                                  device=self.device)
                        tails[name].add(sample.transpose(0, 1).reshape(a.shape[1], -1))
                        if cache is not None:
                            cache.append(name, a, tails[name].floor)
                    bar.advance(task, batch.indices.numel())
            self.source.load_labels = True
            thresholds = dict(given)
            for name, tail in tails.items():
                thresholds[name] = tail.quantile(self.options.quantile)
            if todo:
                self._second_pass(todo, thresholds, counts, cache)
        finally:
            self.source.load_labels = True
            if cache is not None:
                self.cache_stats = cache.stats()
                cache.close()
        return {k: v.cpu() for k, v in thresholds.items()}, counts, topk

    def _second_pass(self, todo: Sequence[str], thresholds: Dict[str, torch.Tensor],
                     counts: Dict[str, TallyCounts], cache: Optional[SparseMapCache]) -> None:
        with progress_bar(not self.quiet) as bar:
            if cache is not None:
                task = bar.add_task("pass 2/2: tally (kept maps)", total=len(self.source))
                fills = {name: below_threshold_fill(thresholds[name]) for name in todo}
                self.source.load_images = False  # labels only: the maps come from the cache
                try:
                    for batch_no, batch in enumerate(self.batches()):
                        for name in todo:
                            a = cache.dense(name, batch_no, fills[name], self.device)
                            self._tally(name, a, thresholds[name], batch, counts)
                        bar.advance(task, batch.indices.numel())
                finally:
                    self.source.load_images = True
                return
            task = bar.add_task("pass 2/2: forward, tally", total=len(self.source))
            with LayerCapture(self.model.module, todo) as capture:
                for batch in self.batches():
                    acts = self.forward(capture, batch)
                    for name in todo:
                        self._tally(name, acts[name], thresholds[name], batch, counts)
                    bar.advance(task, batch.indices.numel())

    # -- the run -----------------------------------------------------------------------------

    def config(self) -> Dict:
        opts = asdict(self.options)
        opts["thresholds"] = {l: {"file": str(Path(p).resolve()), "sha256": sha256_of(p)}
                              for l, p in self.options.thresholds.items()}
        ext = extension_info()
        return {
            "ndcore_version": __version__,
            "model": {"spec": self.model.spec, "weights": self.model.weights,
                      "weights_sha256": self.model.weights_sha256,
                      "preprocess": self.model.preprocess.to_json(),
                      "description": self.model.description},
            "layers": self.layers,
            "dataset": {"spec": self.source.info.spec, "kind": self.source.info.kind,
                        "root": self.source.info.root, "images": len(self.source),
                        "categories": list(self.vocab.categories)},
            "options": opts,
            "versions": {"ndcore": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version(),
                         "extension": {k: ext.get(k) for k in ("loaded", "cuda", "openmp")}},
        }

    def _fingerprint(self, config: Dict) -> Dict:
        """What makes two runs the same (labelling options and speed settings excluded)."""
        opts = {k: config["options"].get(k) for k in ("quantile", "quantile_on", "thresholds",
                                                      "categories", "topk", "max_images")}
        return {"model": config["model"], "layers": config["layers"],
                "dataset": config["dataset"], "options": opts}

    def _prepare_out(self, config: Dict) -> None:
        if self.out is None:
            return
        old_path = self.out / "config.json"
        if old_path.is_file():
            try:
                old = json.loads(old_path.read_text())
                same = self._fingerprint(old) == self._fingerprint(config)
            except (ValueError, KeyError):
                same = False
            if not same:
                raise OutputError(
                    f"{self.out}: already holds a different run (see its config.json); "
                    "choose another --out or delete it"
                )
        elif self.out.exists() and any(self.out.iterdir()):
            raise OutputError(f"{self.out}: exists and is not empty, and is not an ndcore run")
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config(dict(config, complete=False))

    def _write_config(self, config: Dict) -> None:
        tmp = self.out / "config.json.tmp"
        tmp.write_text(json.dumps(config, indent=1))
        tmp.replace(self.out / "config.json")

    def run(self) -> DissectionResult:
        config = self.config()
        self._prepare_out(config)
        started = time.time()
        self.model.module.eval().to(self.device)
        thresholds, counts, topk = self.passes()
        layers = {}
        for name in self.layers:
            state = counts[name].state_dict()
            top = topk[name].state_dict()
            top_np = {"indices": top["indices"].numpy(), "values": top["values"].numpy(),
                      "maps": top["maps"].numpy()}
            layers[name] = LayerResult(name, self.vocab, state, thresholds[name].numpy(),
                                       self.options.union, self.options.cutoff, self.vocab, top_np)
        config["run"] = {"elapsed_s": round(time.time() - started, 3),
                         "second_pass": self.second_pass,
                         "map_cache": getattr(self, "cache_stats", None)}
        result = DissectionResult(layers, self.vocab, config, self.out)
        if self.out is not None:
            self.vocab.save(self.out / "vocabulary.json")
            for name, lr in layers.items():
                save_layer_counts(layer_dir(self.out, name), lr.counts, lr.thresholds, lr.topk)
            self._write_image_list()
            result.write_labels(self.out)
            self._write_config(dict(config, complete=True))
        return result

    def _write_image_list(self) -> None:
        """Image paths by probe index, so reports can find the top-k images again."""
        paths = [self.source.image_path(i) for i in range(len(self.source))]
        with open(self.out / "images.json", "w") as f:
            json.dump(paths, f)
