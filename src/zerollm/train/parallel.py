"""How the training model is spread over processes: DDP or FSDP2, plus activation checkpointing.

The loop (train/loop.py) calls `wrap(model, cfg, info)` once and gets back a `Wrapped` record; everything
that differs between the modes lives here:

    parallel   what each of the N ranks holds                               gradients combined by
    ddp        a full replica: weights + grads + AdamW state (16 B/param)   all-reduce (mean)
    fsdp       1/N of every weight, gradient and AdamW moment (FSDP2)       reduce-scatter (mean)
    auto       fsdp when 16 B × parameters (+ activations) do not fit one device, else ddp

FSDP2 (`torch.distributed.fsdp.fully_shard`, Zhao et al. 2023 "PyTorch FSDP"): each transformer block is
one communication unit — its parameters are all-gathered just before its forward (and again before its
backward) and freed right after, so only one block is ever whole in memory. Then the root (embeddings,
final norm, tied head) is sharded. A value head (reward model / PPO critic) is called outside the root's
forward, so it is its own unit too. On CUDA the all-gathered parameters are bf16 and gradients are
reduced in fp32 (`MixedPrecisionPolicy`); `train.cpu_offload=true` keeps the shards and optimizer state in
host memory. The optimizer is built *after* sharding, over the sharded (DTensor) parameters, so each rank
updates only its shard; `clip_grad_norm_` on DTensors computes the global norm across ranks.

Activation checkpointing (`train.activation_checkpointing=true`, with or without FSDP): a block keeps only
its input and recomputes its activations during backward (Chen et al. 2016): memory ~1 block instead of
n_layer blocks of activations, for ~1/3 more compute.

Anything that decodes token by token (engine rollouts, exact-match evals, samples) cannot run on a sharded
model (each rank would need every other rank in lockstep at every step): `full_model()` all-gathers the
weights into a plain local copy for that. Frozen reference models (DPO log-probs, GRPO/PPO π_ref) stay
plain replicas on every rank: no gradients or optimizer state, so they cost 1/4 of a trainable copy.
"""
from __future__ import annotations

import contextlib
import copy
import os
import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint

from zerollm.train.distributed import DistInfo

PARALLEL_MODES = ("ddp", "fsdp", "auto")
_SHADOWS: weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module] = weakref.WeakKeyDictionary()


@dataclass
class Wrapped:
    model: torch.nn.Module  # what the loop calls: DDP(base), the sharded base, or base itself
    base: torch.nn.Module  # the Transformer (under FSDP the same object as `model`, its weights sharded)
    kind: str  # single | ddp | fsdp

    def sync(self, sync: bool):
        """Context for one micro-batch's backward: gradients are combined across ranks only when `sync`
        (the last micro-batch of an accumulation; DDP's no_sync, FSDP2's set_requires_gradient_sync)."""
        if self.kind == "ddp" and not sync:
            return self.model.no_sync()
        if self.kind == "fsdp":
            self.model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_([p for p in self.base.parameters() if p.grad is not None],
                                              max_norm if max_norm > 0 else float("inf"))
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a DTensor under FSDP


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def device_memory(device: torch.device) -> int:
    """Bytes one rank may use: the GPU's memory, or on CPU the machine's RAM shared by its local ranks."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def training_state_bytes(model: torch.nn.Module) -> int:
    """fp32 weights (4 B) for every parameter + gradient (4 B) and AdamW's two moments (8 B) for the trainable
    ones: the memory DDP needs on every rank before activations (`zerollm estimate` sizes a whole job)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total + 12 * trainable


def choose_parallel(mode: str, model: torch.nn.Module, info: DistInfo, headroom: float = 0.6) -> str:
    """single | ddp | fsdp for train.parallel=`mode`. `auto`: FSDP when the training state would take more than
    `headroom` of one device (the rest is for activations)."""
    if mode not in PARALLEL_MODES:
        raise ValueError(f"train.parallel={mode!r}: expected one of {', '.join(PARALLEL_MODES)}")
    if not info.enabled:
        return "single"
    if mode == "auto":
        return "fsdp" if training_state_bytes(model) > headroom * device_memory(info.device) else "ddp"
    return mode


class _Checkpointed:
    """Mixin put in front of a block's class: forward keeps only its inputs; activations are recomputed in
    backward. A class swap (not a patched bound method) survives copy.deepcopy and FSDP2's own class swap."""

    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            return checkpoint(super().forward, *args, use_reentrant=False, **kwargs)
        return super().forward(*args, **kwargs)


def activation_checkpointing(model: torch.nn.Module) -> None:
    """Checkpoint every block of `model` (a Transformer: `model.blocks`)."""
    for block in model.blocks:
        cls = block.__class__
        if not issubclass(cls, _Checkpointed):
            block.__class__ = type(f"Checkpointed{cls.__name__}", (_Checkpointed, cls), {})


def _shadow(model: torch.nn.Module) -> torch.nn.Module:
    """A structural copy of `model` whose parameters are on the meta device (no memory), buffers real:
    `full_model` fills it with all-gathered weights. Tied parameters stay tied (deepcopy's memo)."""
    memo: dict = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    return copy.deepcopy(model, memo)


def wrap(model: torch.nn.Module, cfg, info: DistInfo) -> Wrapped:
    """Wrap `model` (on info.device) for training under `cfg` (a TrainConfig: parallel, activation_checkpointing,
    cpu_offload, compile)."""
    base = _unwrap(model)
    kind = choose_parallel(getattr(cfg, "parallel", "ddp"), base, info)
    if getattr(cfg, "activation_checkpointing", False):
        activation_checkpointing(base)
    if kind == "fsdp":
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            fully_shard,
            register_fsdp_forward_method,
        )

        if any(p.dtype not in (torch.float32, torch.bfloat16, torch.float16) for p in base.parameters()):
            raise ValueError("train.parallel=fsdp: the model has non-float (quantized) weights; QLoRA trains "
                             "under train.parallel=ddp")
        _SHADOWS[base] = _shadow(base)
        kw: dict = {}
        if info.device.type == "cuda":  # bf16 compute, fp32 gradient reduction
            kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if getattr(cfg, "cpu_offload", False) and info.device.type != "cpu":  # on CPU everything is host memory
            kw["offload_policy"] = CPUOffloadPolicy()
        for block in base.blocks:
            fully_shard(block, **kw)
        if hasattr(base, "value_head"):
            fully_shard(base.value_head, **kw)
            # its (B, T, 1) output is a view; objectives only squeeze it out of place (objectives/base.py)
            warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        fully_shard(base, **kw)
        register_fsdp_forward_method(base, "logits")  # PPO calls model.logits(hidden) after a forward
        model = base
    if cfg.compile:
        model = torch.compile(model)
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    return Wrapped(model=model, base=base, kind=kind)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(_unwrap(model), FSDPModule)


def full_model(model: torch.nn.Module) -> torch.nn.Module:
    """A plain module with `model`'s full weights: the model itself unless it is FSDP-sharded; then every rank
    all-gathers the weights (a collective: call it on all ranks) into a local copy of the same structure."""
    base = _unwrap(model)
    if not is_sharded(base):
        return base
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    state = get_model_state_dict(base, options=StateDictOptions(full_state_dict=True))
    copy_ = copy.deepcopy(_SHADOWS[base])  # meta parameters: nothing allocated
    copy_.load_state_dict(state, strict=False, assign=True)  # (a tied head is the embedding: no own tensor)
    missing = [n for n, p in copy_.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"full_model: weights not gathered: {missing[:4]}")
    return copy_.train(base.training)


def all_reduce_(t: torch.Tensor, op: str = "mean") -> torch.Tensor:
    """In-place sum/mean over ranks (no-op in a single process): RL logging statistics."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        if op == "mean":
            t /= dist.get_world_size()
    return t
