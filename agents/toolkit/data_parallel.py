"""Data-parallel training over several processes: who this process is, and the few collectives
the trainers' shared plumbing uses (toolkit/rollouts.py, toolkit/onpolicy.py, toolkit/training.py).

A trainer runs unchanged under a multi-process launcher::

    accelerate launch --multi_gpu --num_processes 2 -m webgym_bench train --agent reinforce ...
    torchrun --nproc_per_node 2 -m webgym_bench train --agent reinforce ...

(``--multi_gpu`` is accelerate's torchrun-style launcher and works on a CPU-only machine too:
accelerate then picks the gloo backend; its ``--cpu`` flag alone starts ONE process unless
``mpirun`` is configured.) The launcher's environment (``WORLD_SIZE``/``RANK``, or MPI's) says
how many processes run; with one (a plain ``webgym-bench train``) every function here is an
identity or a no-op and imports nothing, so single-process training is exactly what it was.
With several, Hugging Face Accelerate's ``PartialState`` sets the process group up on the first
collective (gloo on CPU, nccl on GPUs).

Imports nothing of the layers; torch and accelerate only when several processes run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "all_gather",
    "all_reduce_grads",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "enabled",
    "is_main",
    "local_world_size",
    "rank",
    "state_digest",
    "world_size",
]

_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return int(value)
    return default


def world_size() -> int:
    """How many processes train together (1 without a multi-process launcher)."""
    return max(1, _env_int(_SIZE_VARS, 1))


def rank() -> int:
    """This process's index among them (0 without a launcher)."""
    return _env_int(_RANK_VARS, 0) if world_size() > 1 else 0


def local_world_size() -> int:
    """How many of them run on this machine (they share its cores)."""
    return max(1, _env_int(_LOCAL_SIZE_VARS, world_size())) if world_size() > 1 else 1


def enabled() -> bool:
    """Several processes train together."""
    return world_size() > 1


def is_main() -> bool:
    """The process that writes the run directory (rank 0)."""
    return rank() == 0


_STATE: Any = None


def _state() -> Any:
    """Accelerate's process state; the process group is set up on the first call."""
    global _STATE
    if _STATE is None:
        import atexit

        import torch
        from accelerate import PartialState

        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        _STATE = PartialState(cpu=use_cpu or not torch.cuda.is_available())
        if _STATE.num_processes != world_size():
            raise RuntimeError(
                f"accelerate sees {_STATE.num_processes} processes, the environment says "
                f"{world_size()}"
            )
        atexit.register(_destroy)
    return _STATE


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` with one process."""
    if not enabled():
        return [obj]
    import torch.distributed as dist

    _state()
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Process ``src``'s ``obj`` on every process."""
    if not enabled():
        return obj
    import torch.distributed as dist

    _state()
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here."""
    if enabled():
        import torch.distributed as dist

        _state()
        dist.barrier()


def broadcast_module(module: Any) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every process (what DDP does
    when it wraps a model), so that the ranks start from one set of weights."""
    if not enabled() or module is None:
        return
    import torch
    import torch.distributed as dist

    device = _state().device
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            buf = t.detach().to(device).clone()
            dist.broadcast(buf, src=0)
            t.copy_(buf.to(t.device))


def all_reduce_grads(params: Iterable[Any], weight: float) -> None:
    """``p.grad <- sum over ranks of weight_r * p.grad_r`` for every parameter, in place.

    ``weight`` is this rank's share (1 / world_size for a plain mean). A parameter without a
    gradient on some rank counts as zeros there; one without a gradient on every rank keeps
    ``grad = None`` (the optimizer skips it, as it would in one process).
    """
    if not enabled():
        return
    import torch
    import torch.distributed as dist

    device = _state().device
    params = list(params)
    if not params:
        return
    has = torch.tensor([float(p.grad is not None) for p in params], device=device)
    dist.all_reduce(has)
    used = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
    if not used:
        return
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in used) else torch.float32
    flat = torch.cat(
        [
            (p.grad.detach() if p.grad is not None else torch.zeros_like(p))
            .reshape(-1)
            .to(device=device, dtype=dtype)
            for p in used
        ]
    )
    flat.mul_(weight)
    dist.all_reduce(flat)
    offset = 0
    for p in used:
        n = p.numel()
        g = flat[offset : offset + n].view_as(p).to(device=p.device, dtype=p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        offset += n


def state_digest(module: Any) -> str:
    """sha256 (16 hex digits) of a module's state dict: equal digests, equal weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()[:16]


def _tensor_bytes(t: Any) -> bytes:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.numpy().tobytes()
