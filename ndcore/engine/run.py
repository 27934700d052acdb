"""A dissection run: wires the stages together and writes the results.

    probe stream ──▶ model + capture ──maps──▶ pass 1 (tails, top-k) ──▶ thresholds
         └──▶ labeller (the source's planes, as label-space ids) ──▶ pass 2 (fused tally)
                                                            ──▶ counts ──▶ labels, files

The stages live in their own modules (stream, forward, accumulators, passes, checkpoint,
distributed); this one decides where the run's files go and what is written at the end.
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..capture import Layout, map_notes, parse_layout, resolve_layers
from ..data.labelspace import LabelSpace
from ..data.probe import ProbeSource
from ..errors import DatasetError, NdcoreError, OutputError
from ..models import ModelAdapter, random_init_caveat, sha256_of, state_sha256
from ..ops import extension_info
from ..progress import progress_bar
from ..results import DissectionResult, LayerResult, layer_dir, save_layer_counts
from ..results.images import write_image_list
from ..version import __version__
from . import checkpoint, distributed
from .forward import ModelRunner, decide_layouts
from .options import DissectOptions
from .passes import Passes, PassResults
from .rundir import RunDirectory, fingerprint_hash
from .scratch import remove_stale
from .stage import DatasetStage, RotatingStage, Stage, rotation_matrix
from .stream import BatchGrid, ItemCheck, ProbeStream

# A caller's extra output, written into the run directory before the run is marked complete
# (so that a run killed while writing it is resumed, not taken as finished): called with the
# run directory, the probe source, the result and the images the top-k statistics kept
# (probe index -> uint8 [H, W, 3]). The report's thumbnails are one.
RunOutput = Callable[[Path, ProbeSource, DissectionResult, Dict[int, np.ndarray]], object]

# What a run says about its output directory (resumed, already complete): INFO records that the
# command line prints as plain lines; the Python API leaves them to the caller's logging setup.
status = logging.getLogger("ndcore.run")

# Options that only relabel saved counts: a finished run given others is relabelled, not redone.
LABEL_OPTIONS = ("union", "cutoff", "fdr")


class Dissection:
    """One dissection run of a model's layers over a probe source."""

    def __init__(self, model: ModelAdapter, layers: Sequence[str], source: ProbeSource,
                 options: DissectOptions, out: Optional[Path] = None, quiet: bool = False,
                 item_check: Optional[ItemCheck] = None,
                 outputs: Sequence[RunOutput] = ()) -> None:
        if not layers:
            raise NdcoreError("no layers to dissect: give --layers L1,L2")
        self.model = model
        # Derived layers (--rotate): {LAYER@rot<alpha>: (LAYER, alpha)}, dissected after the
        # given layers; `captured` are the model's layers that the forward pass captures.
        self.derived = options.derived_layers()
        self.layers = list(dict.fromkeys(list(layers) + list(self.derived)))
        self.captured = list(dict.fromkeys(self.derived.get(l, (l,))[0] for l in self.layers))
        self.source = source
        self.options = options
        self.out = Path(out) if out is not None else None
        self.quiet = quiet
        self.item_check = item_check
        self.outputs = tuple(outputs)
        self.vocab = source.vocabulary
        if len(source) == 0:
            raise DatasetError(f"{source.info.spec}: the dataset has no images")
        unknown = [l for l in options.thresholds if l not in self.layers]
        if unknown:
            raise NdcoreError(f"--thresholds names layer {unknown[0]!r}, which is not in --layers")
        for layer in options.rotate:
            try:
                resolve_layers(model.module, [layer])
            except NdcoreError as e:
                raise NdcoreError(f"--rotate {layer}: {e}") from None
        # Checks the layer names and --layout, and decides every layer's layout (nchw, nhwc,
        # tokens, vector) on probe image 0, before any work or file: {layer: layout}.
        self.layouts = self._decide_layouts()
        self.labelspace = LabelSpace(self.vocab)
        self._runner: Optional[ModelRunner] = None  # the forward stage's, once made

    def _decide_layouts(self) -> Dict:
        return decide_layouts(self.model, self.captured, self.options.layouts, self.source)

    def config(self) -> Dict:
        opts = asdict(self.options)
        opts["thresholds"] = {l: {"file": str(Path(p).resolve()), "sha256": sha256_of(p)}
                              for l, p in self.options.thresholds.items()}
        ext = extension_info()
        return {
            "ndcore_version": __version__,
            "model": {"spec": self.model.spec, "weights": self.model.weights,
                      "weights_sha256": self.model.weights_sha256 or state_sha256(self.model),
                      "preprocess": self.model.preprocess.to_json(),
                      "description": self.model.description,
                      "random_init": bool(self.model.random_init)},
            "layers": self.layers,
            # how each layer's output became [B, C, h, w] maps (nchw, nhwc, tokens, vector)
            "layouts": {l: str(self.layouts[self.derived.get(l, (l,))[0]]) for l in self.layers
                        if self.derived.get(l, (l,))[0] in self.layouts},
            "dataset": {"spec": self.source.info.spec, "kind": self.source.info.kind,
                        "root": self.source.info.root, "images": len(self.source),
                        "categories": list(self.vocab.categories),
                        # images:DIR's labeller: the run's probe source is rebuilt with it
                        **({"segmenter": self.source.info.extra["segmenter"]}
                           if "segmenter" in (self.source.info.extra or {}) else {})},
            "options": opts,
            # what every result of the run should be read with (the report puts them on top);
            # the layers' own caveats are added after the passes, as "layer_caveats"
            "caveats": self.caveats(),
            "versions": {"ndcore": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version(),
                         "extension": {k: ext.get(k) for k in ("loaded", "cuda", "openmp")}},
        }

    def caveats(self) -> List[str]:
        """The run-level caveats: what the run warned about that concerns all its layers."""
        return [random_init_caveat(self.model.spec)] if self.model.random_init else []

    def layer_caveats(self, results: PassResults) -> Dict[str, List[str]]:
        """Each layer's caveats ({layer: notes}; layers without any left out): the notes on its
        maps (1x1 maps; a threshold resting on a handful of values) from their size, as the
        forward stage warns on the first batch. Warns about those no stage warned about (a
        generator's layers, derived layers, a run resumed past its forward passes)."""
        warned = {n for notes in (self._runner.notes if self._runner else {}).values()
                  for n in notes}
        out: Dict[str, List[str]] = {}
        for name in self.layers:
            maps = results.topk.get(name, {}).get("maps")
            if maps is None:
                continue
            source = self.derived.get(name, (name,))[0]
            layout = self._runner.layouts.get(source) if self._runner else None
            layout = parse_layout(layout or self.layouts.get(source) or Layout())
            notes = map_notes(name, layout, tuple(maps.shape[-2:]), len(self.source),
                              self.options.quantile)
            for note in notes:
                if note not in warned:
                    warnings.warn(note, stacklevel=2)
            if notes:
                out[name] = notes
        return out

    def _given_thresholds(self) -> Dict[str, torch.Tensor]:
        given = {}
        for layer, path in self.options.thresholds.items():
            try:
                values = np.load(path)
            except Exception as e:
                raise NdcoreError(f"--thresholds {layer}={path}: cannot load ({e})") from None
            given[layer] = torch.as_tensor(np.asarray(values, dtype=np.float32).reshape(-1))
        return given

    # -- the stages (a generator run overrides these) ----------------------------------------

    def _stage(self, device: torch.device) -> Stage:
        self._runner = ModelRunner(
            self.model, device, self.options.precision, layouts=self.options.layouts,
            compile=self.options.compile, channels_last=self.options.channels_last,
            images=len(self.source), quantile=self.options.quantile)
        return DatasetStage(self._runner)

    def rotating_stage(self, device: torch.device) -> Stage:
        """The run's stage, which also makes the derived layers of ``--rotate``."""
        stage = self._stage(device)
        if self.derived:
            stage = RotatingStage(stage, self.derived, self.options.rotate_seed)
        return stage

    def _stream(self, grid: BatchGrid, device: torch.device):
        return ProbeStream(self.source, self.labelspace, grid, device, self.options.workers,
                           self.item_check)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Optional[DissectionResult]:
        """Run (or resume) the dissection; the result on rank 0, None on other ranks."""
        return distributed.run_in_group(self.options.device, self._run)

    def _run(self, dist: distributed.Dist, device: torch.device) -> Optional[DissectionResult]:
        config = self.config()
        remove_stale(self.options.cache_dir)  # scratch folders of runs that died
        writer = dist.is_writer and self.out is not None
        run_dir = RunDirectory(self.out) if writer else None
        resume = run_dir.prepare(config, self.options.overwrite) if run_dir else None
        # A finished run with this fingerprint is read back, not recomputed; every rank learns
        # it from rank 0 (which alone looks at --out).
        finished = self._load_complete(run_dir, config) if run_dir and run_dir.complete else None
        if dist.broadcast(finished is not None):
            return finished
        previous_s, batch_size, grid = resumed_grid(resume, dist, self.options.batch_size,
                                                    len(self.source))
        started = time.time()
        if resume is not None:
            status.info("resuming from checkpoint: %s", resume_point(resume, grid))
        given = {k: v.to(device) for k, v in self._given_thresholds().items()}
        keeps_checkpoints = writer and self.options.checkpoint_every > 0
        with progress_bar(not self.quiet and dist.is_writer) as bar:
            stage = self.rotating_stage(device)
            passes = Passes(
                stage=stage, stream=self._stream(grid, device),
                layers=self.layers, given=given, options=self.options,
                labelspace=self.labelspace, dist=dist, device=device,
                run_dir=self.out if keeps_checkpoints else None,
                fingerprint=fingerprint_hash(config), progress=_Progress(bar),
                previous_s=previous_s)
            results = passes.run(resume)
        if results is None:
            return None
        config["run"] = run_record(previous_s + time.time() - started, resume is not None,
                                   dist.world, batch_size, results)
        config["layer_caveats"] = self.layer_caveats(results)
        result = self._result(results, config)
        if run_dir is not None:
            self._write(result, results, run_dir, config)
        return result

    def _load_complete(self, run_dir: RunDirectory, config: Dict) -> Optional[DissectionResult]:
        """The finished run in ``--out``, labelled with this run's union, cut-off and FDR
        (relabelled on disk when they changed); None when its files cannot be read, and then
        the directory is made ready for the run to be computed again."""
        try:
            result = DissectionResult.load(self.out, union=self.options.union,
                                           cutoff=self.options.cutoff, fdr=self.options.fdr)
        except (OutputError, OSError, ValueError, KeyError) as e:
            warnings.warn(f"{self.out}: the finished run cannot be read back ({e}); computing "
                          "it again")
            run_dir.prepare(config, overwrite=True)
            return None
        status.info("%s: already complete (use --overwrite to redo)", self.out)
        saved = dict(result.config.get("options", {}))
        changed = {k: getattr(self.options, k) for k in LABEL_OPTIONS
                   if saved.get(k) != getattr(self.options, k)}
        if changed:  # as a recomputed run would: its labels and config.json say the new ones
            result.write_labels()
            result.config["options"] = dict(saved, **changed)
            run_dir.write_config(result.config, complete=True)
        return result

    def _result(self, results: PassResults, config: Dict) -> DissectionResult:
        layers = {}
        for name in self.layers:
            top = results.topk[name]
            top_np = {"indices": top["indices"].numpy(), "values": top["values"].numpy(),
                      "maps": top["maps"].float().numpy().astype(np.float16)}
            layers[name] = LayerResult(name, self.vocab, results.counts[name],
                                       results.thresholds[name].numpy(), self.options.union,
                                       self.options.cutoff, self.vocab, top_np,
                                       self.options.threshold, results.resamples.get(name),
                                       self.options.fdr,
                                       caveats=config["layer_caveats"].get(name, []))
        return DissectionResult(layers, self.vocab, config, self.out)

    def _write(self, result: DissectionResult, results: PassResults, run_dir: RunDirectory,
               config: Dict) -> None:
        self.vocab.save(self.out / "vocabulary.json")
        for name, lr in result.layers.items():
            save_layer_counts(layer_dir(self.out, name), lr.counts, lr.thresholds, lr.topk,
                              lr.resamples)
            if name in self.derived:  # R_alpha: the rotated unit i is sum_j R[i, j] unit_j
                np.save(layer_dir(self.out, name) / "rotation.npy",
                        rotation_matrix(len(lr.thresholds), self.derived[name][1],
                                        self.options.rotate_seed))
        write_image_list(self.out, self.source)
        if self.outputs:
            kept = kept_images(results.topk)
            for write in self.outputs:
                write(self.out, self.source, result, kept)
        result.write_labels(self.out)
        run_dir.write_config(config, complete=True)
        checkpoint.remove(self.out)



def run_record(elapsed_s: float, resumed: bool, world: int, batch_size: int,
               results: PassResults) -> Dict:
    """config.json's ``run``: how the run went (time across resumes, processes, pass 2)."""
    return {"elapsed_s": round(elapsed_s, 3), "resumed": resumed, "world_size": world,
            "batch_size": batch_size, "second_pass": results.second_pass,
            "map_cache": results.map_store,
            "checkpoints": {"count": results.checkpoints["count"],
                            "seconds": round(results.checkpoints["seconds"], 4)}}


def resumed_grid(resume: Optional[Dict], dist: distributed.Dist, batch_size: int,
                 images: int) -> Tuple[float, int, BatchGrid]:
    """Where a run goes on from its checkpoint ``resume`` (rank 0's; None: from the start): its
    run time so far, its batch size (the checkpoint's: its batches are the grid's) and this
    rank's batch grid."""
    previous_s = float(resume.get("elapsed_s", 0.0)) if resume else 0.0
    batch_size = dist.broadcast(int(resume["batch_size"]) if resume else batch_size)
    return previous_s, batch_size, BatchGrid(images, batch_size, dist.rank, dist.world)


def resume_point(resume: Dict, grid: BatchGrid) -> str:
    """'pass 1, 768/3,000 images': how far the checkpoint got."""
    done = grid.images_in(int(b) for b in resume["done"])
    return f"pass {int(resume['phase'])}, {done:,}/{grid.size:,} images"


def kept_images(topk: Dict[str, Dict]) -> Dict[int, np.ndarray]:
    """Probe index -> uint8 [H, W, 3] of the images the top-k statistics kept (generators)."""
    out: Dict[int, np.ndarray] = {}
    for top in topk.values():
        if top.get("images") is None:
            continue
        for index, image in zip(top["image_indices"].tolist(), top["images"]):
            out.setdefault(index, image.permute(1, 2, 0).numpy())
    return out


class _Progress:
    """Progress callback of the passes: one rich task per pass."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.tasks: Dict[str, int] = {}

    def __call__(self, title: str, done: int, total: int) -> None:
        if title not in self.tasks:
            self.tasks[title] = self.bar.add_task(title, total=total, completed=done)
        else:
            self.bar.update(self.tasks[title], completed=done)
