"""Capturing (and optionally editing) named layers of a model in one forward pass.

Hooks are always removed in a ``finally``. When only captured outputs are needed, the forward
pass stops right after the last requested layer has run. Each captured output is turned into
[B, C, h, w] maps by its layout (:mod:`.layouts`), in the hook, with at most one copy.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch
from torch import nn

from ..errors import LayerError, NdcoreError, suggest
from .layouts import Declaration, Layout, decide, lookup
from .recognize import recognize

Edit = Callable[[torch.Tensor], torch.Tensor]
LayoutSpecs = Mapping[str, Union[str, Declaration]]
# One mapping, or several in priority order (e.g. the user's --layout, then the adapter's).
LayoutArg = Union[None, LayoutSpecs, Sequence[Optional[LayoutSpecs]]]


def spec_list(layouts: LayoutArg) -> List[Optional[LayoutSpecs]]:
    if layouts is None:
        return []
    if isinstance(layouts, Mapping):
        return [layouts]
    return list(layouts)


class _StopForward(Exception):
    pass


def hookable_layers(model: nn.Module) -> List[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_layers(model: nn.Module, names: Sequence[str]) -> Dict[str, nn.Module]:
    """Map dotted module paths to modules, with a helpful error for unknown names."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or not name:
            raise LayerError(
                f"layer {name!r} not found in {type(model).__name__}"
                f"{suggest(name, hookable_layers(model))}; `ndcore layers MODEL` lists them"
            )
        out[name] = modules[name]
    return out


def declared_layouts(model: nn.Module, layers: Sequence[str],
                     *specs: Optional[LayoutSpecs]) -> Dict[str, Optional[Declaration]]:
    """The declared layout of each layer: the first of ``specs`` (highest priority first, e.g.
    the user's ``--layout`` then the adapter's ``layouts``) that names it (exactly or by an
    fnmatch pattern), else torchvision recognition, else None (decided from the output).
    Unknown layer names and malformed specs raise one-line errors."""
    resolve_layers(model, layers)
    recognized = recognize(model)
    out: Dict[str, Optional[Declaration]] = {}
    for layer in layers:
        found = None
        for spec in specs:
            if spec:
                try:
                    found = lookup(spec, layer)
                except NdcoreError as e:
                    raise LayerError(f"layer {layer!r}: {e}") from None
                if found is not None:
                    break
        out[layer] = found if found is not None else recognized.get(layer)
    return out


class LayerCapture:
    """Context manager: ``with LayerCapture(model, ["layer3", "layer4"]) as cap: maps = cap(x)``.

    ``cap(x)`` runs the model on ``x`` and returns {layer: maps [B, C, h, w]}, whatever the
    layer's native layout (``cap.layouts`` says which it was; unit k is channel k). The maps are
    contiguous, in ``dtype`` when given (else the layer's own dtype), and never share memory
    with a tensor that the forward pass changes after the layer, nor with its result (at most
    one copy per layer: the layout change, the dtype change and the defensive copy are the same
    copy). The defensive copy is made only where needed: the first call copies every layer and
    watches the originals (their version counters); later calls copy only the layers whose
    output the forward pass went on to change in place (e.g. a ReLU(inplace=True) after it), and
    check the others after every call - a call that finds one changed runs again, copying it.

    ``layouts`` declares layouts by layer name or fnmatch pattern (``"features.*": "nhwc"``),
    or is a list of such mappings in priority order (the user's, then the model adapter's);
    undeclared layers get torchvision's recognised layouts, then one decided from their output
    (see :mod:`ndcore.capture.layouts`); a layer whose layout cannot be decided is refused.

    ``edits`` maps a layer to a function applied to its output (interventions). **An edit sees
    the layer's maps in NCHW**, [B, C, h, w] as a view of the output in its native layout and
    dtype: the same units and grid as the dissection's maps, so ``x[:, units] = 0`` ablates
    units and a mask at h x w inserts them in a region, in any layout. It returns a tensor of
    that shape (or the view, edited in place); the result is written back into the native
    layout (class and other leading tokens are left as they were) and goes on through the
    model, and the captured maps are the edited ones. With edits, the forward pass runs to its
    end (its result is ``cap.output``); otherwise ``stop_early`` ends it after the last
    captured layer (``cap.output`` is then None).

    ``forward`` replaces ``model`` as the callable that runs (e.g. a ``torch.compile`` of it):
    hooks are still registered on ``model``'s submodules.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str],
                 edits: Optional[Dict[str, Edit]] = None, stop_early: bool = True,
                 layouts: LayoutArg = None, dtype: Optional[torch.dtype] = None,
                 forward: Optional[Callable] = None) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = resolve_layers(model, self.layers)
        self.edits = edits or {}
        unknown = [l for l in self.edits if l not in self.modules]
        if unknown:
            raise LayerError(f"edit for layer {unknown[0]!r}, which is not captured")
        self.stop_early = stop_early and not self.edits
        self.declared = declared_layouts(model, self.layers, *spec_list(layouts))
        self.dtype = dtype
        self.forward = forward if forward is not None else model
        self.layouts: Dict[str, Layout] = {}  # decided at the first forward pass
        self.shapes: Dict[str, tuple] = {}  # native output shapes, last forward pass
        self.outputs: Dict[str, torch.Tensor] = {}
        self.output = None
        self._batch: Optional[int] = None
        self._handles: list = []
        # layers whose output the forward pass changes later (None: not known before one call)
        self._must_copy: Optional[Set[str]] = None
        self._watched: Dict[str, Tuple[torch.Tensor, int]] = {}  # tensor, version at capture

    def __enter__(self) -> "LayerCapture":
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if name in self.outputs:
                raise LayerError(
                    f"layer {name!r} ran twice in one forward pass; ndcore needs one map per image"
                )
            layout = decide(name, output, self.declared[name], module, self._batch)
            self.layouts[name] = layout
            self.shapes[name] = tuple(output.shape)
            edited = name in self.edits
            if edited:
                view = layout.to_nchw(output)
                result = self.edits[name](view)
                if result is not None and result is not view:
                    output = layout.with_nchw(output, result)
            last = len(self.outputs) + 1 == len(self.layers)
            stop = self.stop_early and last
            view = layout.to_nchw(output)
            copy = not stop and (self._must_copy is None or name in self._must_copy
                                 or view.is_inference())  # (no version counter to watch)
            self.outputs[name] = _maps(view, self.dtype, copy=copy)
            if not stop and not view.is_inference():
                self._watched[name] = (view, view._version)
            if stop:
                raise _StopForward
            return output if edited else None

        return hook

    def __call__(self, x) -> Dict[str, torch.Tensor]:
        self.outputs = {}
        self.output = None
        self._watched = {}
        self._batch = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else None
        try:
            self.output = self.forward(x)
        except _StopForward:
            pass
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise LayerError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
        changed = {n for n, (t, version) in self._watched.items() if t._version != version}
        changed |= self._sharing_the_result()
        if self._must_copy is None:  # the first call copied every layer: learn which must be
            self._must_copy = changed
        elif changed - self._must_copy:  # an uncopied layer was changed after all: again
            self._must_copy |= changed
            return self(x)
        return self.outputs

    def _sharing_the_result(self) -> Set[str]:
        """Layers whose maps share memory with the forward pass's result (which the caller
        may change)."""
        if not isinstance(self.output, torch.Tensor) or self.output.is_inference():
            return set()
        result = self.output.untyped_storage().data_ptr()
        return {n for n, (t, _) in self._watched.items()
                if t.untyped_storage().data_ptr() == result}


def _maps(view: torch.Tensor, dtype: Optional[torch.dtype], copy: bool) -> torch.Tensor:
    """Contiguous maps in ``dtype``; a fresh tensor when ``copy`` (the forward pass goes on,
    and a later in-place op, e.g. ReLU(inplace=True), would change what was captured)."""
    dtype = dtype or view.dtype
    if view.dtype != dtype or not view.is_contiguous():
        return view.to(dtype=dtype, memory_format=torch.contiguous_format)  # the one copy
    return view.clone() if copy else view


def layer_shapes(model: nn.Module, input_size=(224, 224), device="cpu") -> Dict[str, tuple]:
    """Output shape of every hookable module for a 1-image input (non-tensors get None)."""
    shapes: Dict[str, tuple] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inp, out, name=name):
            shapes.setdefault(name, tuple(out.shape) if isinstance(out, torch.Tensor) else None)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    return shapes
