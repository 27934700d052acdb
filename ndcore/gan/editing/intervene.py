"""Interventions on a dissected generator and their causal effect on the segmentation.

    effect of an edit on concept c = E_z[s_c(G'(z))] - E_z[s_c(G(z))]

with s_c the fraction of an image's pixels segmented as c, G' the edited generator, and the
mean taken over the samples the segmenter could label. The removal curve ranks a concept's
units by IoU and ablates the top 1, 2, 4, ... of them (GAN Dissection's "remove trees").
The same functions serve ``ndcore intervene``, the Python API and the painting page.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...errors import NdcoreError, OutputError, suggest
from ...files import replace_atomically
from ...models import state_sha256
from ...results import DissectionResult, LayerResult
from ...specs import rebuild_model, resolve_segmenter
from .edits import Ablate, Insert, UnitEdit, edit
from ..generator import GeneratorInfo, require_generator, to_images
from ..latents import latents
from ...data.segmenters import Segmenter


@dataclass
class GeneratorRun:
    """A saved generator dissection, with its generator and segmenter rebuilt."""

    directory: Path
    config: Dict
    result: DissectionResult
    adapter: object
    info: GeneratorInfo
    segmenter: Segmenter
    segmenter_spec: str

    def layer(self, name: Optional[str]) -> LayerResult:
        layers = self.result.layers
        if name is None:
            return layers[list(layers)[-1]]
        if name not in layers:
            raise NdcoreError(f"{self.directory}: the run has no layer {name!r}"
                              f"{suggest(name, layers)}; it has {', '.join(layers)}")
        return layers[name]

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> "GeneratorRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def concept(self, label: str) -> int:
        names = self.result.vocabulary.label_names
        if label not in names[1:]:
            raise NdcoreError(f"concept {label!r} is not in the segmenter's vocabulary"
                              f"{suggest(label, names[1:])}")
        return names.index(label)


def load_generator_run(run_dir, device: str = "cpu") -> GeneratorRun:
    """Load a complete generator run and rebuild its generator and segmenter."""

    run_dir = Path(run_dir)
    result = DissectionResult.load(run_dir)
    config = result.config
    dataset = config.get("dataset", {})
    if dataset.get("kind") != "generator":
        raise OutputError(f"{run_dir}: not a generator run (dissected on "
                          f"{dataset.get('spec')}); interventions need a generator")
    adapter = rebuild_model(config)
    recorded = config["model"].get("weights_sha256") or ""
    if recorded.startswith("state:"):
        if state_sha256(adapter) != recorded:
            raise NdcoreError(f"{config['model']['spec']}: the generator's weights changed "
                              "since the run (its state hash differs from config.json)")
    info = require_generator(adapter, dataset.get("latent_shape"))
    if dataset.get("output_range"):
        info = GeneratorInfo(info.latent_shape, tuple(dataset["output_range"]))
    adapter.module.eval().to(device)
    spec = dataset["segmenter"]
    return GeneratorRun(run_dir, config, result, adapter, info, resolve_segmenter(spec)[0], spec)


def concept_fractions(labels: torch.Tensor, valid: Optional[torch.Tensor],
                      num_labels: int) -> Tuple[np.ndarray, int]:
    """Per label, the summed fraction of pixels over valid samples; and how many were valid."""
    labels = labels.to("cpu", torch.int64)
    n, p, h, w = labels.shape
    keep = torch.ones(n, dtype=torch.bool) if valid is None else valid.to("cpu").bool()
    sums = np.zeros(num_labels, dtype=np.float64)
    for b in np.nonzero(keep.numpy())[0]:
        present = torch.zeros(num_labels, h * w, dtype=torch.bool)
        for plane in labels[b].reshape(p, -1):
            present[plane, torch.arange(h * w)] = True
        sums += present.sum(1).numpy() / (h * w)
    sums[0] = 0.0
    return sums, int(keep.sum())


def generate(run: GeneratorRun, indices: Sequence[int], seed: int,
             edits: Optional[Dict[str, UnitEdit]] = None, device: str = "cpu") -> torch.Tensor:
    """uint8 images [B, 3, H, W] of samples ``indices`` (edited if ``edits``)."""
    z = latents(list(indices), run.info.latent_shape, seed).to(device)
    module = run.adapter.module
    # the layouts the run recorded, so units are addressed as its dissection addressed them
    with torch.no_grad(), edit(module, edits or {}, layouts=run.config.get("layouts")):
        out = module(z)
    return to_images(out, run.info, run.adapter.spec).cpu()


def shares(run: GeneratorRun, edits: Optional[Dict[str, UnitEdit]], samples: int, seed: int,
           batch_size: int = 50, device: str = "cpu") -> Tuple[np.ndarray, torch.Tensor]:
    """Mean share of pixels per concept over the samples the segmenter labels (``edits``
    applied, if any), and the images (uint8, CPU)."""
    vocab = run.result.vocabulary
    total, labelled, images = np.zeros(vocab.num_labels), 0, []
    for start in range(0, samples, batch_size):
        batch = generate(run, range(start, min(samples, start + batch_size)), seed, edits,
                         device)
        seg = run.segmenter.segment(batch)
        sums, n = concept_fractions(seg.labels, seg.valid, vocab.num_labels)
        total, labelled = total + sums, labelled + n
        images.append(batch)
    if labelled == 0:
        raise NdcoreError(f"segmenter {run.segmenter_spec} labelled none of the {samples} "
                          "samples; nothing to measure")
    return total / labelled, torch.cat(images)


def measure(run: GeneratorRun, edits: Dict[str, UnitEdit], samples: int, seed: int,
            batch_size: int = 50, device: str = "cpu"):
    """Mean concept shares before and after ``edits`` over ``samples`` samples, and the
    images of both (uint8, CPU)."""
    before, before_images = shares(run, None, samples, seed, batch_size, device)
    after, after_images = shares(run, edits, samples, seed, batch_size, device)
    return before, after, before_images, after_images


def effects_table(vocab, before: np.ndarray, after: np.ndarray) -> Dict[str, Dict[str, float]]:
    out = {}
    for l in range(1, vocab.num_labels):
        if before[l] == 0 and after[l] == 0:
            continue
        out[vocab.label_names[l]] = {"before": float(before[l]), "after": float(after[l]),
                                     "effect": float(after[l] - before[l])}
    return out


def unit_edit(layer: LayerResult, units: Sequence[int], ablate: bool,
              insert: Optional[float], region: Optional[torch.Tensor]) -> UnitEdit:
    """An Ablate or Insert of ``units`` (0-based, as in the summary); the default insert value
    is each unit's threshold, its top-0.5% activation level."""
    units = [int(u) for u in units]
    if ablate:
        e: UnitEdit = Ablate(units, region)
    else:
        value = [float(layer.thresholds[u]) for u in units if 0 <= u < layer.num_units] \
            if insert is None else float(insert)
        e = Insert(units, region, value=value)
    e.check(layer.num_units, layer.layer)
    return e


def top_units(layer: LayerResult, concept: int, k: int) -> List[int]:
    """The k units with the largest IoU for ``concept`` (ties: lower unit first)."""
    iou = layer.iou[:, concept]
    order = sorted(range(layer.num_units), key=lambda u: (-iou[u], u))
    return order[:k]


def removal_curve(run: GeneratorRun, layer_name: str, concept: str, tops: Sequence[int],
                  samples: int, seed: int, batch_size: int = 50, device: str = "cpu"):
    """For each k in ``tops``: the concept's share after ablating its top-k units (the
    unedited share is measured once)."""
    layer = run.layer(layer_name)
    c = run.concept(concept)
    for k in tops:
        if not 1 <= k <= layer.num_units:
            raise NdcoreError(f"--top {k}: layer {layer.layer!r} has {layer.num_units} units")
    before = shares(run, None, samples, seed, batch_size, device)[0][c]
    points = []
    for k in tops:
        units = top_units(layer, c, k)
        after = shares(run, {layer.layer: Ablate(units)}, samples, seed, batch_size, device)[0][c]
        points.append({"k": k, "units": units, "fraction": float(after),
                       "remaining": float(after / before) if before > 0 else None})
    return {"concept": concept, "layer": layer.layer, "before": float(before),
            "samples": samples, "seed": seed, "points": points}


def write_json(path: Path, data: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(data, indent=1)
    replace_atomically(path, lambda tmp: tmp.write_text(body))


# -- where an intervention's files go ---------------------------------------------------------

# The files that mark a folder as an intervention's (effects, removal curve, replayed edit).
INTERVENTION_FILES = ("effects.json", "removal.json", "edit.json")
_UNITS_SHOWN = 8      # a longer unit list is shortened in the name (and a hash added)
_NAME_LIMIT = 100     # characters, before the hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+@-]")


def intervention_name(layer: str, units: Optional[Sequence[int]] = None, *,
                      insert: Union[None, bool, float] = None,
                      region: Optional[Sequence[int]] = None, seed: int = 0,
                      concept: Optional[str] = None,
                      top: Optional[Sequence[int]] = None) -> str:
    """A readable folder name that says which edit it holds, the same for the same edit:
    ``main.8-ablate-1-2-3``, ``main.8-insert=2.5-7-region-0-0-16-16-seed-3``,
    ``main.8-remove-tree-top-1-2-4-8``. Units are sorted (the same edit in any order); a long
    unit list, a name with characters a file name should not hold, or a very long name is
    shortened and ends with a hash of the whole edit, so that names stay distinct."""
    if concept is not None:
        parts = [layer, "remove", concept, "top", *map(str, top or ())]
        edit_units: List[int] = []
    else:
        edit_units = sorted({int(u) for u in units or ()})
        mode = "ablate" if insert is None or insert is False else \
            "insert" if insert is True else f"insert={float(insert):g}"
        shown = edit_units if len(edit_units) <= _UNITS_SHOWN else \
            edit_units[:_UNITS_SHOWN - 2] + [f"and-{len(edit_units) - _UNITS_SHOWN + 2}-more"]
        parts = [layer, mode, *map(str, shown)]
    if region is not None:
        parts += ["region", *(str(int(v)) for v in region)]
    if seed:
        parts += ["seed", str(int(seed))]
    raw = "-".join(parts)
    name = _UNSAFE.sub("_", raw).lstrip(".") or "_"
    if name != raw or len(name) > _NAME_LIMIT or len(edit_units) > _UNITS_SHOWN:
        whole = json.dumps([layer, concept, list(top or ()), edit_units,
                            None if insert is None else str(insert),
                            None if region is None else [int(v) for v in region], int(seed)])
        name = f"{name[:_NAME_LIMIT]}-{hashlib.sha256(whole.encode()).hexdigest()[:8]}"
    return name


def run_layers(run_dir) -> List[str]:
    """The layers a run's config.json lists ([] when it cannot be read: loading the run
    then says what is wrong)."""
    try:
        layers = json.loads((Path(run_dir) / "config.json").read_text())["layers"]
        return [str(l) for l in layers]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def holds_intervention(folder: Path) -> bool:
    return any((folder / name).is_file() for name in INTERVENTION_FILES)


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse, in one line, an ``out`` that an intervention would replace or clobber: one
    holding an earlier intervention (unless ``overwrite``), or a folder of other things."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, not a folder for the intervention")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not holds_intervention(out):
        raise OutputError(f"{out}: exists, is not empty and holds no intervention; choose "
                          "another --out")
    if not overwrite:
        raise OutputError(f"{out}: holds an earlier intervention; give --overwrite to replace "
                          "it, or --out DIR to write elsewhere")


@contextlib.contextmanager
def staged_output(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A fresh folder to write the intervention into, which becomes ``out`` only once all its
    files are written: an error or Ctrl-C leaves ``out`` as it was (an earlier intervention
    it holds is replaced only then, and only with ``overwrite``)."""
    out = Path(out)
    check_output(out, overwrite)
    # A hidden sibling (same file system: the rename is atomic); the report skips hidden folders.
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    made = [p for p in out.parents if not p.exists()]  # removed again if nothing comes of it
    try:
        stage.mkdir(parents=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({e.strerror or e})") from None
    try:
        yield stage
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():  # checked above: empty, or an earlier intervention to replace
            out.rename(old)
        try:
            stage.rename(out)
        except BaseException:  # put the earlier one back
            if old.exists() and not out.exists():
                old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made if not out.exists() else ():  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
