"""One edit of one generated sample, as a JSON file: what the painting page downloads and
``ndcore intervene --edit FILE.json`` (or ``ndcore.intervene(run, edit=...)``) replays.

    {"format": "ndcore-edit/1", "model": "dcgan-faces", "seed": 12, "layer": "main.8",
     "mode": "ablate", "concept": "white", "units": [45, 3], "values": [0.0, 0.0],
     "region": {"size": [64, 64], "rle": [130, 6, 58, 6, ...]}}

The sample is index 0 of ``seed`` (its latent is ``latents([0], shape, seed)``). ``values``
are what the units are set to inside the region: 0 to ablate, by default each unit's threshold
to insert. ``region`` is the painted mask at the generated image's resolution, run-length
coded in row-major order, starting with a run of unpainted pixels (``null``: everywhere).
Replaying builds the same Ablate/Insert with the same region and runs the same ``generate``,
so the image is the same, pixel for pixel.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ...errors import NdcoreError
from .edits import Ablate, Insert, UnitEdit
from .intervene import GeneratorRun, generate, top_units, unit_edit

FORMAT = "ndcore-edit/1"
SEED_MAX = 2**32 - 1
MODES = ("ablate", "insert")


class EditFileError(NdcoreError):
    """An edit (a JSON file, or a request of the painting page) is malformed."""


# -- the region: a bool mask at image resolution <-> run lengths ------------------------------

def encode_mask(mask: torch.Tensor) -> Dict:
    """bool [H, W] -> {"size": [H, W], "rle": [unpainted, painted, unpainted, ...]}."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "rle": [int(r) for r in runs]}


def decode_mask(region, size: Tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`encode_mask`, checked against the image ``size`` (H, W)."""
    if not isinstance(region, dict) or set(region) - {"size", "rle"} or \
            not {"size", "rle"} <= set(region):
        raise EditFileError('region: expected {"size": [H, W], "rle": [counts...]}')
    h, w = size
    got = region["size"]
    if not (isinstance(got, list) and len(got) == 2 and all(_is_int(v) for v in got)):
        raise EditFileError("region.size: expected [H, W] (two integers)")
    if list(got) != [h, w]:
        raise EditFileError(f"region is {got[0]}x{got[1]} (HxW), the images are {h}x{w}: the "
                            "mask must be at the generated image's resolution")
    rle = region["rle"]
    if not isinstance(rle, list) or len(rle) > h * w + 1:
        raise EditFileError(f"region.rle: expected a list of at most {h * w + 1} run lengths")
    if not all(_is_int(r) and 0 <= r <= h * w for r in rle):
        raise EditFileError("region.rle: run lengths must be integers >= 0")
    if sum(rle) != h * w:
        raise EditFileError(f"region.rle: the runs cover {sum(rle)} pixels, the image has "
                            f"{h * w} ({h}x{w})")
    values = np.zeros(len(rle), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(rle, dtype=np.int64))
    return torch.from_numpy(flat.reshape(h, w).copy())


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_seed(seed) -> int:
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise EditFileError(f"seed {seed!r}: expected an integer from 0 to {SEED_MAX}")
    return seed


# -- the edit ---------------------------------------------------------------------------------

@dataclass
class SampleEdit:
    """Ablate or insert ``units`` of ``layer`` inside ``region`` on sample 0 of ``seed``."""

    seed: int
    layer: str
    mode: str
    units: List[int]
    values: List[float]
    region: Optional[torch.Tensor]  # bool [H, W] at image resolution; None: everywhere
    concept: Optional[str] = None
    model: Optional[str] = None

    def unit_edit(self) -> UnitEdit:
        """The Ablate/Insert that this edit applies (same classes as every other edit)."""
        if self.mode == "ablate":
            return Ablate(list(self.units), self.region)
        return Insert(list(self.units), self.region, value=list(self.values))

    def to_json(self) -> Dict:
        return {
            "format": FORMAT, "model": self.model, "seed": self.seed, "layer": self.layer,
            "mode": self.mode, "concept": self.concept, "units": [int(u) for u in self.units],
            "values": [float(v) for v in self.values],
            "region": None if self.region is None else encode_mask(self.region),
        }


def image_size(run: GeneratorRun, device: str = "cpu") -> Tuple[int, int]:
    """(H, W) of the run's generated images."""
    return tuple(generate(run, [0], 0, device=device).shape[-2:])


def make_edit(run: GeneratorRun, layer: Optional[str], seed: int, mode: str, *,
              units: Optional[Sequence[int]] = None, concept: Optional[str] = None,
              k: Optional[int] = None, region: Optional[torch.Tensor] = None) -> SampleEdit:
    """A new edit: the given ``units``, or the top ``k`` units of ``concept`` by IoU; insert
    values are each unit's threshold (as ``unit_edit`` chooses them)."""
    lr = run.layer(layer)
    check_seed(seed)
    if mode not in MODES:
        raise EditFileError(f"mode {mode!r}: expected 'ablate' or 'insert'")
    if (units is None) == (concept is None):
        raise EditFileError("give either units or a concept (with k)")
    if concept is not None:
        c = run.concept(concept)
        if not _is_int(k) or not 1 <= k <= lr.num_units:
            raise EditFileError(f"k {k!r}: expected an integer from 1 to {lr.num_units} (the "
                                f"units of layer {lr.layer!r})")
        units = top_units(lr, c, k)
    elif not isinstance(units, (list, tuple)) or not all(_is_int(u) for u in units):
        raise EditFileError("units: expected a list of integers")
    e = unit_edit(lr, units, mode == "ablate", None, region)  # checks the units' range
    values = [0.0] * len(units) if mode == "ablate" else \
        [float(v) for v in torch.as_tensor(e.value).reshape(-1)]
    return SampleEdit(seed, lr.layer, mode, [int(u) for u in units], values, region, concept,
                      run.config["model"].get("spec"))


def load_edit(source: Union[str, Path, Dict], run: GeneratorRun,
              size: Optional[Tuple[int, int]] = None) -> SampleEdit:
    """A saved edit (a JSON file's path, or its dict), checked against ``run``."""
    where = "edit"
    if not isinstance(source, dict):
        path = Path(source)
        where = str(path)
        try:
            source = json.loads(path.read_text())
        except OSError as e:
            raise EditFileError(f"{path}: cannot read the edit ({e.strerror or e})") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise EditFileError(f"{path}: not a JSON edit ({e})") from None
    try:
        return _parse(source, run, size)
    except EditFileError as e:
        raise EditFileError(f"{where}: {e}") from None


def _parse(d, run: GeneratorRun, size: Optional[Tuple[int, int]]) -> SampleEdit:
    if not isinstance(d, dict):
        raise EditFileError("expected a JSON object")
    if d.get("format") != FORMAT:
        raise EditFileError(f"format {d.get('format')!r}: expected {FORMAT!r}")
    missing = [k for k in ("seed", "layer", "mode", "units", "values", "region") if k not in d]
    if missing:
        raise EditFileError(f"missing {', '.join(missing)}")
    spec = run.config["model"].get("spec")
    if d.get("model") not in (None, spec):
        raise EditFileError(f"the edit was made on model {d['model']!r}; this run's model is "
                            f"{spec!r}")
    seed = check_seed(d["seed"])
    if not isinstance(d["layer"], str):
        raise EditFileError("layer: expected a layer name")
    lr = run.layer(d["layer"])
    mode = d["mode"]
    if mode not in MODES:
        raise EditFileError(f"mode {mode!r}: expected 'ablate' or 'insert'")
    units, values = d["units"], d["values"]
    if not isinstance(units, list) or not all(_is_int(u) for u in units):
        raise EditFileError("units: expected a list of integers")
    if not isinstance(values, list) or len(values) != len(units) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                    math.isfinite(v) for v in values):
        raise EditFileError("values: expected one finite number per unit")
    if mode == "ablate" and any(v != 0 for v in values):
        raise EditFileError("values: an ablation sets its units to 0")
    region = None
    if d["region"] is not None:
        region = decode_mask(d["region"], size or image_size(run))
    concept = d.get("concept")
    if concept is not None and not isinstance(concept, str):
        raise EditFileError("concept: expected a name or null")
    edit = SampleEdit(seed, lr.layer, mode, list(units), [float(v) for v in values], region,
                      concept, spec)
    edit.unit_edit().check(lr.num_units, lr.layer)
    return edit


# -- images -----------------------------------------------------------------------------------

def render(run: GeneratorRun, edit: Optional[SampleEdit], seed: Optional[int] = None,
           device: str = "cpu") -> torch.Tensor:
    """uint8 [3, H, W]: sample 0 of the edit's seed, edited (or of ``seed``, unedited)."""
    if edit is None:
        return generate(run, [0], check_seed(seed), device=device)[0]
    return generate(run, [0], edit.seed, {edit.layer: edit.unit_edit()}, device)[0]


def png_bytes(image: torch.Tensor) -> bytes:
    """uint8 [3, H, W] -> PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG")
    return buf.getvalue()
