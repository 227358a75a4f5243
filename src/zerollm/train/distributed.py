"""Device choice and torchrun / DDP setup.

Run unchanged on one CPU, one GPU, or under `torchrun --nproc_per_node=N`: torchrun sets RANK, WORLD_SIZE
and LOCAL_RANK; we then join a process group (nccl on CUDA, gloo on CPU) and every rank reads its own
slice of each global batch (see `zerollm.data.loader`). Gradients are averaged by DDP's all-reduce (or FSDP's
reduce-scatter, train/parallel.py), so N ranks with batch B/N each compute the same update as one process
with batch B.

Multi-node is the same code: `torchrun --nnodes N --nproc_per_node G --rdzv-backend c10d
--rdzv-endpoint HOST:PORT` on every node sets a global RANK (data shards by it) and LOCAL_RANK (the GPU).
A failure never hangs the job: every collective gives up after `timeout_s` (init_process_group's timeout,
which gloo and NCCL's watchdog enforce), and `failure_guard` turns the backend's error into one line that
says which rank stopped waiting and why (torchrun, seeing one worker exit, also stops the others).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from zerollm.runtime import pick_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(requested_device: str = "auto", timeout_s: float = 600.0) -> DistInfo:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=pick_device(requested_device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = pick_device(requested_device)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":  # NCCL's watchdog aborts a collective stuck past the timeout
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj` (picklable), in rank order; [obj] in a single process."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class RankFailure(RuntimeError):
    """Another rank died or stopped answering: this one gives up instead of waiting forever."""


@contextlib.contextmanager
def failure_guard(info: DistInfo, timeout_s: float):
    """Re-raise a collective's failure (a peer closed its connection, or nothing came within the timeout) as
    one clear line naming this rank; errors that are not about the process group pass through unchanged."""
    try:
        yield
    except (RuntimeError, dist.DistError) as e:
        text = str(e)
        words = ("Connection closed", "Connection reset", "timed out", "Timeout", "timeout", "peer", "NCCL",
                 "gloo", "Broken pipe", "DistNetworkError", "DistBackendError")
        if not info.enabled or isinstance(e, RankFailure) or not any(w in text or w in type(e).__name__ for w in words):
            raise
        first = text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__
        raise RankFailure(f"rank {info.rank}/{info.world_size}: another rank failed or stopped responding "
                          f"(collective timeout {timeout_s:g}s, train.dist_timeout_s); stopping this rank too. "
                          f"Backend said: {first}") from None
