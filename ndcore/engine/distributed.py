"""torch.distributed for dissection runs: one process per rank, exact merging of states.

``torchrun --nproc-per-node N -m ndcore dissect ...`` sets RANK / WORLD_SIZE / LOCAL_RANK and
the rendezvous; :func:`from_env` joins the process group (gloo on the CPU, nccl on GPUs) and
picks the device (``cuda:LOCAL_RANK`` for a CUDA run). Every rank works on its shard of the
batch grid; states are gathered and merged with the accumulators' own exact ``merge``; only
rank 0 writes files. Without torchrun (WORLD_SIZE unset or 1) nothing here communicates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, List, Optional, TypeVar

import torch
import torch.distributed as dist

from ..errors import NdcoreError

T = TypeVar("T")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group (so we destroy it)
    device: torch.device = torch.device("cpu")  # where collectives' tensors live (nccl: GPU)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Every rank's ``obj`` in rank order on rank 0; None on the others."""
        if not self.active:
            return [obj]
        # all_gather_object works on every backend (gloo's gather_object needs no more).
        out = self.all_gather(obj)
        return out if self.is_writer else None

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_writer else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a one-element broadcast)."""
        if not self.active:
            return flag
        box = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.broadcast(box, src=0)
        return bool(box.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def from_env(device: str) -> tuple[Dist, torch.device]:
    """Join the process group described by torchrun's environment; returns (Dist, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist(), torch.device(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if ":" in device:
            raise NdcoreError(f"--device {device}: under torchrun give --device cuda; each rank "
                              "uses cuda:LOCAL_RANK")
        if local_rank >= torch.cuda.device_count():
            raise NdcoreError(f"rank {rank}: LOCAL_RANK {local_rank} but only "
                              f"{torch.cuda.device_count()} CUDA device(s) are visible")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    owns = False
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("NDCORE_DIST_TIMEOUT", "1800")))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                timeout=timeout)
        owns = True
    return Dist(rank, world, local_rank, owns, dev if cuda else torch.device("cpu")), dev


def run_in_group(device: str, body: Callable[[Dist, torch.device], T]) -> T:
    """``body(dist, device)`` in the process group torchrun describes (or alone), which is left
    when it returns or raises."""
    group, dev = from_env(device)
    try:
        return body(group, dev)
    finally:
        group.close()
