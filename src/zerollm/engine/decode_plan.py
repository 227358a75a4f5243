"""A decode step (one new token per row, or a few) through every block in one native call.

`Block.forward` (layers.py) is the readable definition of a layer; during decoding it costs a few hundred
small PyTorch calls per token besides the matmuls, 4-5 ms per token on GPT-2-124M on 2 CPU cores, as much as
all of int4's matmuls. `DecodePlan` hands the same computation to `torch.ops.zerollm_kernels.decode_layers`
(kernels/decode_step.cpp): the model's own tensors (fp32 weights or quantized codes, norms, biases) are
gathered once into flat lists, and each step is one call over all layers. `native.forward` (what the decoders
call) uses the plan when one is attached (`native.optimize_for_decode`, with native kernels), the input is at
most `NATIVE_MAX_ROWS` float32 tokens on the CPU that fit in the cache (one per row when decoding; a
speculative draft being verified; a short prompt), no gradient is needed, and the layers are still the modules
the plan was built from; anything else (long prompts, training, LoRA, other dtypes) takes the Python blocks.
tests/engine/test_engine_decode_step.py checks the two paths agree for every architecture switch.

Layout per layer (decode_step.cpp reads it):
    tensors  norm1 w, norm1 b, norm2 w, norm2 b, q_norm w, k_norm w, then 7 linears × 6 slots
             (weight | codes, scales | NF4 levels, mins, bias, absmax_q8, absmax_s2), None where absent;
             linears: q, k, v, o, then fc, proj (GELU MLP) or gate, up, down (SwiGLU)
    meta     norm (0 LayerNorm, 1 RMSNorm), mlp (0 GELU tanh, 1 GELU erf, 2 SwiGLU), parallel residual,
             n_head, n_kv_head, head_dim, rotary dims (0 = none), qk-norm; per linear: kind (-1 absent,
             0 fp32, 1 int8, 2 int4, 3 NF4), int4 group size
    fmeta    norm1 eps, norm2 eps, qk-norm eps; per linear: NF4 absmax mean
"""
from __future__ import annotations

import torch
from torch import nn

from zerollm import kernels
from zerollm.kernels import NATIVE_MAX_ROWS, ops
from zerollm.model.layers import Block, GeluMLP, RMSNorm, SwiGLU
from zerollm.model.quant import NF4_LEVELS, QuantLinear

_KINDS = {"int8": 1, "int4-sym": 2, "int4-asym": 2, "nf4": 3}


class DecodePlan:
    """The flat argument lists of `decode_layers` for one model; `None` from `build` when a layer has a
    module the native step does not know (LoRA, a Linear the kernels cannot take, ...)."""

    def __init__(self, blocks, tensors: list, meta: list[int], fmeta: list[float]):
        self.blocks = blocks  # the modules the lists came from: the plan is stale once they change
        # the child-module dicts of every block, live and as built: one list comparison per step (dict
        # equality compares modules by identity) notices a module swapped in since (LoRA, re-quantizing)
        self._live = [d for b in blocks for d in (b._modules, b.attn._modules, b.mlp._modules)]
        self._built = [dict(d) for d in self._live]
        self.tensors, self.meta, self.fmeta = tensors, meta, fmeta

        self._op = ops().decode_layers  # looked up once: `run` is called every token

    @classmethod
    def build(cls, model) -> "DecodePlan | None":
        if not kernels.load():
            return None
        tensors: list = []
        meta: list[int] = []
        fmeta: list[float] = []
        rot_dim = model.rope.rot_dim if model.rope is not None else 0
        for block in model.blocks:
            layer = _layer(block, rot_dim)
            if layer is None:
                return None
            tensors += layer[0]
            meta += layer[1]
            fmeta += layer[2]
        return cls(model.blocks, tensors, meta, fmeta)

    def applies(self, model, idx: torch.Tensor, cache) -> bool:
        """Whether this step (token ids idx (B, T)) of `model` can go through the native call (see the module
        docstring); the embeddings' dtype and device are the activations'."""
        emb = model.tok_emb.weight
        return (idx.numel() <= NATIVE_MAX_ROWS and emb.dtype == torch.float32 and emb.device.type == "cpu"
                and cache.pos + idx.shape[1] <= cache.max_len
                and not torch.is_grad_enabled() and not model.training and model.blocks is self.blocks
                and cache.k[0].dtype == torch.float32 and cache.k[0].is_contiguous()
                and self._live == self._built)

    def run(self, x: torch.Tensor, cache, rope: tuple | None) -> torch.Tensor:
        """x (B, T, D) after the embeddings -> (B, T, D) after the last block; writes slots
        [cache.pos, cache.pos + T) of every layer's keys/values (the caller advances the cache)."""
        cos = sin = None
        if rope is not None:  # (T, rot) or (B, 1, T, rot) -> (B·T, rot), one row per token
            (B, T, _), rot = x.shape, rope[0].shape[-1]
            cos, sin = (t.reshape(-1, T, rot).expand(B, T, rot).reshape(B * T, rot) for t in rope)
        valid = cache.valid.contiguous() if cache.valid is not None else None
        return self._op(x, self.tensors, self.meta, self.fmeta, cache.k, cache.v, cache.pos, cos, sin, valid)


def _linear(mod: nn.Module | None) -> tuple[list, list[int], float] | None:
    """A linear's 6 tensor slots, (kind, group) and NF4 absmax mean; None if the native GEMVs cannot run it."""
    if mod is None:
        return [None] * 6, [-1, 0], 0.0
    from .native import DecodeLinear

    if type(mod) in (nn.Linear, DecodeLinear):
        w = mod.weight
        if w.dtype != torch.float32 or not w.is_contiguous() or mod.in_features % 32:
            return None
        return [w, None, None, mod.bias, None, None], [0, 0], 0.0
    if type(mod) is QuantLinear and mod.kernel != "aten" and mod.native_ok():
        s, kind = mod.scheme, _KINDS[mod.scheme]
        if s == "nf4":
            return ([mod.qweight, NF4_LEVELS, None, mod.bias, mod.absmax_q8, mod.absmax_s2], [kind, 0],
                    float(mod.absmax_mean))
        mins = mod.mins if s == "int4-asym" else None
        return [mod.qweight, mod.scales, mins, mod.bias, None, None], [kind, mod.group_size], 0.0
    return None


def _norm(mod: nn.Module) -> tuple[int, torch.Tensor, torch.Tensor | None, float] | None:
    if type(mod) is RMSNorm:
        return 1, mod.weight, None, mod.eps
    if type(mod) is nn.LayerNorm and mod.elementwise_affine:
        return 0, mod.weight, mod.bias, mod.eps
    return None


def _layer(block: nn.Module, rot_dim: int) -> tuple[list, list[int], list[float]] | None:
    if type(block) is not Block:
        return None
    attn, mlp = block.attn, block.mlp
    n1, n2 = _norm(block.norm1), _norm(block.norm2)
    if n1 is None or n2 is None or n1[0] != n2[0]:
        return None
    if type(mlp) is SwiGLU:
        mlp_kind, mlp_lins = 2, (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    elif type(mlp) is GeluMLP:
        mlp_kind, mlp_lins = (0 if mlp.approximate == "tanh" else 1), (mlp.fc, mlp.proj, None)
    else:
        return None
    lins = [_linear(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, *mlp_lins)]
    if any(lin is None for lin in lins):
        return None
    qk = attn.q_norm is not None
    tensors = [n1[1], n1[2], n2[1], n2[2], attn.q_norm.weight if qk else None, attn.k_norm.weight if qk else None]
    meta = [n1[0], mlp_kind, int(block.parallel_residual), attn.n_head, attn.n_kv_head, attn.head_dim, rot_dim,
            int(qk)]
    fmeta = [n1[3], n2[3], attn.q_norm.eps if qk else 0.0]
    for t, m, f in lins:
        tensors += t
        meta += m
        fmeta.append(f)
    return tensors, meta, fmeta
