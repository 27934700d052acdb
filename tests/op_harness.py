"""What the tests of the compiled ops (tally, iou_histogram) share: skip marks, and the table
machinery that checks every runner (CPU kernel, dispatcher, reference, wrapper; and CUDA)
rejects the same bad input with the same message."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from ndcore.ops import extension_info

LOADED = extension_info()["loaded"]
needs_ext = pytest.mark.skipif(not LOADED, reason="compiled extension ndcore._C not built")
cuda = pytest.mark.cuda
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")

SAME_DEVICE = "; all inputs must be on the same device (the op does not move tensors)"
# Call one kernel itself (the dispatcher would pick another kernel for other inputs).
CPU_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
CUDA_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)

Edit = Callable[[list], None]  # changes a list of op arguments in place


def assign(index: int, value) -> Edit:
    def edit(a: list) -> None:
        a[index] = value(a) if callable(value) else value
    return edit


def to_device(index: int, device: str) -> Edit:
    return assign(index, lambda a: a[index].to(device))


def set_label(value: int, dtype: torch.dtype = torch.int32) -> Edit:
    """Labels (argument 2) as ``dtype``, with one pixel set to ``value``."""
    def edit(a: list) -> None:
        a[2] = a[2].to(dtype)
        a[2][1, 1, 4, 5] = value
    return edit


def cuda_args(args, device: str = "cuda") -> list:
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def expect_rejection(run: Callable, args: list, message: str) -> None:
    with pytest.raises(ValueError) as info:
        run(*args)
    assert str(info.value) == message
