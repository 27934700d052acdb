"""``ndcore.intervene``: the Python face of ``ndcore intervene`` (same code, same files).

    effects = ndcore.intervene("runs/faces", layer="main.8", units=[3, 7], ablate=True,
                               samples=200, seed=1)
    effects["concepts"]["eyes"]   # {"before": 0.021, "after": 0.004, "effect": -0.017}

    curve = ndcore.intervene("runs/faces", layer="main.8", concept="eyes", top=[1, 2, 4, 8],
                             ablate=True)

    again = ndcore.intervene("runs/faces", edit="edit.json")   # replay a painted edit
    again["images"]["after"]   # uint8 [1, 3, H, W]: the page's edited image, pixel for pixel
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ...errors import NdcoreError
from . import intervene as iv
from .edit_file import image_size, load_edit, png_bytes, render
from .edits import box_mask
from .figures import save_grid, save_removal_curve

Region = Union[Tuple[int, int, int, int], torch.Tensor, None]

# How a request's parts are named in errors: the Python keywords, or the CLI's flags.
PYTHON_NAMES = {"ablate": "ablate=True", "insert": "insert=True / insert=VALUE",
                "units": "units", "concept": "concept", "top": "top", "samples": "samples",
                "batch_size": "batch_size", "value": "insert"}
CLI_NAMES = {"ablate": "--ablate", "insert": "--insert [VALUE]", "units": "--units",
             "concept": "--concept", "top": "--top", "samples": "--samples",
             "batch_size": "--batch-size", "value": "--insert"}


def check_request(*, ablate: bool, insert: Union[None, bool, float], units, concept, top,
                  samples: int, batch_size: int,
                  names: Mapping[str, str] = PYTHON_NAMES) -> None:
    """Refuse a malformed intervention request before any model is loaded, naming its parts
    as ``names`` spells them (the CLI passes :data:`CLI_NAMES`, so its errors name flags)."""
    n = names
    inserting = insert is not None and insert is not False
    if ablate == inserting:
        raise NdcoreError(f"give exactly one of {n['ablate']} and {n['insert']}")
    if inserting and insert is not True:
        if isinstance(insert, bool) or not isinstance(insert, numbers.Real) or \
                not math.isfinite(insert):
            # a NaN or Inf unit would fill the images with NaN
            raise NdcoreError(f"{n['value']} {insert!r}: expected a finite number")
    if (units is None) == (concept is None):
        raise NdcoreError(f"give either {n['units']} or {n['concept']} (with {n['top']})")
    if concept is not None and not ablate:
        raise NdcoreError(f"the removal curve ({n['concept']}, {n['top']}) ablates: give "
                          f"{n['ablate']}")
    if samples < 1:
        raise NdcoreError(f"{n['samples']} {samples}: must be >= 1")
    if batch_size < 1:
        raise NdcoreError(f"{n['batch_size']} {batch_size}: must be >= 1")


def intervene(run_dir, layer: Optional[str] = None, units: Optional[Sequence[int]] = None, *,
              ablate: bool = False, insert: Union[None, bool, float] = None,
              region: Region = None, samples: int = 100, seed: int = 0,
              concept: Optional[str] = None, top: Optional[Sequence[int]] = None,
              out=None, device: str = "cpu", batch_size: int = 50,
              edit: Union[None, str, Path, Dict] = None) -> Dict:
    """Ablate or insert ``units`` of ``layer`` (0-based) in a dissected generator and measure
    each concept's share of pixels before and after, over ``samples`` samples of ``seed``.

    ``insert=True`` inserts each unit at its threshold, a number inserts that value.
    ``region`` limits the edit to a box (x0, y0, x1, y1) or a bool mask at the generated
    image's resolution. With ``concept`` and ``top`` instead of ``units``, returns the removal
    curve. ``out`` (a folder) receives effects.json and before/after grids (or removal.json
    and removal.svg).

    ``edit`` (a JSON file written by ``ndcore paint``, or its dict) replays one edit of one
    sample exactly: it gives the seed, layer, units, values and region, so give none of those.
    Returns the edit and the images before and after; ``out`` receives original.png,
    edited.png and edit.json.
    """
    if edit is not None:
        given = [name for name, v in (("units", units), ("concept", concept), ("top", top),
                                      ("region", region)) if v is not None]
        given += ["ablate"] if ablate else []
        given += ["insert"] if insert is not None and insert is not False else []
        if given:
            raise NdcoreError(f"an edit file gives the units, values and region itself: give "
                              f"no {', '.join(given)} with it")
        return replay_edit(run_dir, edit, layer=layer, out=out, device=device)
    check_request(ablate=ablate, insert=insert, units=units, concept=concept, top=top,
                  samples=samples, batch_size=batch_size)
    with iv.load_generator_run(run_dir, device) as run:
        return _intervene(run, layer, units, ablate, insert, region, samples, seed, concept,
                          top, out, device, batch_size)


def _intervene(run, layer, units, ablate, insert, region, samples, seed, concept, top, out,
               device, batch_size) -> Dict:
    lr = run.layer(layer)
    out = Path(out) if out is not None else None
    if concept is not None:
        curve = iv.removal_curve(run, lr.layer, concept, list(top or (1, 2, 4, 8)), samples,
                                 seed, batch_size, device)
        if out is not None:
            iv.write_json(out / "removal.json", curve)
            save_removal_curve(curve, out / "removal.svg")
        return curve

    size = tuple(iv.generate(run, [0], seed, device=device).shape[-2:])
    mask = box_mask(tuple(int(v) for v in region), size) if isinstance(region, (tuple, list)) \
        else region
    if mask is not None and tuple(mask.shape) != size:
        raise NdcoreError(f"region mask is {tuple(mask.shape)}, the images are {size}")
    value = None if ablate or insert is True else float(insert)
    e = iv.unit_edit(lr, units, ablate, value, mask)
    before, after, imgs_before, imgs_after = iv.measure(run, {lr.layer: e}, samples, seed,
                                                        batch_size, device)
    result = {
        "concepts": iv.effects_table(run.result.vocabulary, before, after),
        "edit": {"layer": lr.layer, "units": [int(u) for u in units],
                 "mode": "ablate" if ablate else "insert",
                 "value": None if ablate else [float(v) for v in
                                               torch.as_tensor(e.value).reshape(-1)],
                 "region": list(region) if isinstance(region, (tuple, list)) else
                 (None if region is None else "mask")},
        "samples": samples, "seed": seed,
    }
    if out is not None:
        iv.write_json(out / "effects.json", result)
        save_grid(imgs_before, out / "before.png")
        save_grid(imgs_after, out / "after.png")
    result["images"] = {"before": imgs_before, "after": imgs_after}
    return result


def replay_edit(run_dir, edit: Union[str, Path, Dict], layer: Optional[str] = None, out=None,
                device: str = "cpu") -> Dict:
    """Replay a saved edit of one sample (see :mod:`ndcore.gan.editing.edit_file`)."""
    with iv.load_generator_run(run_dir, device) as run:
        spec = load_edit(edit, run, image_size(run, device))
        if layer is not None and run.layer(layer).layer != spec.layer:
            raise NdcoreError(f"the edit is of layer {spec.layer!r}, not {layer!r}")
        before = render(run, None, spec.seed, device)
        after = render(run, spec, device=device)
    result = {"edit": spec.to_json(),
              "images": {"before": before[None], "after": after[None]}}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "original.png").write_bytes(png_bytes(before))
        (out / "edited.png").write_bytes(png_bytes(after))
        iv.write_json(out / "edit.json", result["edit"])
    return result
