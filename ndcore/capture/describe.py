"""What ``ndcore layers`` shows: every module's output, its layout, units and map size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..errors import LayerError, NdcoreError
from .hooks import LayoutArg, declared_layouts, spec_list
from .layouts import Layout, decide, short_note

PROBE_BATCH = 2  # two images, so that outputs without a batch axis show up


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: Optional[Tuple[int, ...]]  # for one image; None: not a tensor, or never ran
    layout: Optional[Layout] = None  # None: cannot be dissected (see ``problem``)
    units: Optional[int] = None
    map_size: Optional[Tuple[int, int]] = None
    note: str = ""  # flags 1x1 maps and maps too small to threshold
    problem: str = ""  # why it cannot be dissected

    @property
    def dissectable(self) -> bool:
        return self.layout is not None


def describe_layers(model: nn.Module, input_size=(224, 224), layouts: LayoutArg = None,
                    device="cpu", *, quantile: float) -> List[LayerInfo]:
    """One row per module, in the order the modules first ran (modules that never ran last);
    the notes flag maps too small to threshold at top quantile ``quantile``."""
    modules = {name: m for name, m in model.named_modules() if name}
    declared = declared_layouts(model, list(modules), *spec_list(layouts))
    rows: dict = {}
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            if name in rows:
                return
            row = LayerInfo(name, type(module).__name__, None)
            if isinstance(output, torch.Tensor):
                shape = tuple(output.shape)
                row.shape = (1,) + shape[1:] if shape and shape[0] == PROBE_BATCH else shape
            try:
                layout = decide(name, output, declared[name], module, PROBE_BATCH)
            except LayerError as e:
                row.problem = str(e)
            else:
                row.layout = layout
                row.units = layout.units(output.shape)
                row.map_size = layout.map_size(output.shape)
                row.note = short_note(layout, row.map_size, quantile)
            rows[name] = row

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(torch.zeros(PROBE_BATCH, 3, *input_size, device=device))
    except NdcoreError:
        raise
    except Exception as e:
        raise NdcoreError(f"{type(model).__name__} fails on a {PROBE_BATCH}x3x{input_size[0]}x"
                          f"{input_size[1]} input ({type(e).__name__}: {_first_line(e)}); try "
                          "another --input-size") from None
    finally:
        for h in handles:
            h.remove()
    for name, module in modules.items():
        if name not in rows:
            rows[name] = LayerInfo(name, type(module).__name__, None,
                                   problem="does not run as a module in the forward pass")
    return list(rows.values())


def _first_line(e: BaseException) -> str:
    return next((l.strip() for l in str(e).splitlines() if l.strip()), "")[:200]
