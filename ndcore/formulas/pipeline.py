"""``ndcore formulas`` without the command line: a finished run's layer -> its units' masks and
the probe set's label masks -> the formula search -> ``<layer>/formulas.json``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NdcoreError
from ..models import ModelAdapter
from ..progress import progress_bar
from ..version import __version__
from .data import FormulaDataBuilder
from .output import write_formulas
from .run_masks import RunLayer, check_categories, check_units, feed_builder, open_run
from .search import search_formulas, validate_settings

@dataclass
class LayerFormulas:
    run: RunLayer
    path: Path  # the formulas.json written
    header: Dict
    rows: List[Dict]  # this call's units, as written
    # per unit, its best single label and IoU under the same semantics (all images count: the
    # plain union, docs/method.md section 5) from the run's saved counts: the length-1 formula
    singles: Dict[int, Tuple[str, float]]


def candidate_labels(run: RunLayer, categories: Sequence[str]) -> List[int]:
    """The label numbers a formula may use: those with a category in ``categories``."""
    vocab = run.layer_result.full_vocabulary or run.result.vocabulary
    wanted = set(categories)
    return [l for l in range(1, vocab.num_labels)
            if wanted.intersection(vocab.label_categories[l])]


def explain_layer(run_dir, layer: str, *, length: int = 3, search: str = "optimal",
                  beam: int = 5, units: Optional[Sequence[int]] = None,
                  categories: Optional[Sequence[str]] = None, device: Optional[str] = None,
                  workers: int = 0, batch_size: Optional[int] = None,
                  quiet: bool = True, model: Optional[ModelAdapter] = None) -> LayerFormulas:
    """Each unit's best formula up to ``length`` (docs/method.md section 16), written to
    ``<run_dir>/<layer>/formulas.json``. ``model`` overrides the model rebuilt from the run's
    config.json (for models that no spec can build)."""
    validate_settings(length, search, beam)  # before the long pass over the images
    run = open_run(run_dir, layer)
    units = check_units(run, units)
    categories = check_categories(run, categories)
    labels = candidate_labels(run, categories)
    if not labels:
        raise NdcoreError(f"categories {', '.join(categories)}: no label to build formulas from")
    started = time.time()
    builder = FormulaDataBuilder(run.label_names, len(units))
    with progress_bar(not quiet) as bar:
        task = bar.add_task("unit and label masks", total=run.images or None)
        images = feed_builder(builder, run, units, categories, device=device, workers=workers,
                              batch_size=batch_size, model=model,
                              progress=lambda done, total: bar.update(task, completed=done))
        data = builder.finish()
        masked = time.time()
        sizes = data.label_sizes()
        labels = [l for l in labels if sizes[l] > 0]  # a label on no pixel joins no formula
        if not labels:
            raise NdcoreError(f"{run.directory}: no label of {', '.join(categories)} occurs on "
                              "the probe images")
        found = bar.add_task(f"{search} search", total=len(units))
        results = search_formulas(data, list(range(len(units))), length=length, method=search,
                                  beam=beam, labels=labels,
                                  progress=lambda k: bar.advance(found, k))
    rows = []
    for r in results:  # the search numbers the builder's units 0..; the file the layer's
        rows.append({"unit": units[r.unit], "formula": r.formula, "iou": float(r.iou),
                     "length": int(r.length), "optimal": bool(r.optimal),
                     "visited": int(r.visited)})
    header = {"layer": layer, "length": length, "search": search, "beam": beam,
              "categories": list(categories), "labels": len(labels), "images": images,
              "union": "plain", "seconds": round(time.time() - started, 3),
              "mask_seconds": round(masked - started, 3),  # the model over the images
              "search_seconds": round(time.time() - masked, 3),
              "ndcore_version": __version__}
    path = write_formulas(run.directory, layer, header, rows)
    plain = run.result.relabel(union="plain", categories=categories).layers[layer].units
    singles = {u: (plain[u].label, float(plain[u].iou)) for u in units}
    return LayerFormulas(run, path, header, rows, singles)
