"""Multi-process training under ``torchrun`` with DDP semantics.

The trainer works on parameter dicts (torch.func), not on a wrapped module, so
instead of ``DistributedDataParallel`` it does what DDP does by hand:

1. every rank starts from rank 0's parameters (``broadcast_``),
2. after each backward pass the outer gradients are averaged over ranks
   (``average_gradients_``, one all-reduce on a flat buffer),
3. every rank then takes the same optimizer step, so parameters stay identical.

Each rank reads different families: the stream splits its shards by rank (and
by DataLoader worker). ``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; without them everything here is a no-op.
Backend: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from fewtask_data import FewtaskError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    device: str = "cpu"  # where collectives' tensors live (nccl needs CUDA tensors)

    @property
    def enabled(self) -> bool:
        """In a process group (under torchrun, even with one process, so the backend is exercised)."""
        return self.backend != ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise FewtaskError(f"environment variable {name}={raw!r} is not an integer; unset it or run under torchrun") from None


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op without torchrun)."""
    world = _env_int("WORLD_SIZE", 1)
    if world < 1 or (world == 1 and "MASTER_ADDR" not in os.environ):
        return DistInfo()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, backend, str(device))


def device_for(requested: str) -> torch.device:
    """The device this rank uses: ``cuda`` picks the rank's local GPU, ``auto`` CUDA when present."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FewtaskError("--device cuda asked for, but CUDA is not available; use --device cpu")
        if requested == "cuda":
            return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    try:
        return torch.device(requested)
    except RuntimeError:
        raise FewtaskError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or auto") from None


def _flat_apply(tensors: list[torch.Tensor], op) -> None:
    """Run a collective once on all tensors packed into one flat buffer, then unpack in place."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    op(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def broadcast_(tensors: Iterable[torch.Tensor], info: DistInfo) -> None:
    """Overwrite every rank's tensors with rank 0's (call once after building the model)."""
    if info.enabled:
        with torch.no_grad():
            _flat_apply(list(tensors), lambda flat: dist.broadcast(flat, src=0))


def average_gradients_(params: Iterable[torch.Tensor], info: DistInfo) -> None:
    """Average ``.grad`` over ranks in place (a missing grad counts as zero, so ranks never deadlock)."""
    if not info.enabled:
        return
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]

    def mean(flat: torch.Tensor) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(info.world_size)

    with torch.no_grad():
        _flat_apply(grads, mean)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a time limit reached)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (for checks and logs; small objects only)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank: a rank that tears its group down while another still
    talks to it resets the peer's connection (gloo: 'Connection reset by peer')."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
