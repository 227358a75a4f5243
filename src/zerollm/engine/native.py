"""Fast CPU decoding, attached to a model from the engine side: model/transformer.py stays the plain
definition, and the decoders (Engine, beam search, speculative decoding) call `forward` / `logits` below in
place of `model(idx, cache=..., return_hidden=True)` / `model.logits(hidden)`.

`optimize_for_decode(model)` switches two things on (values, shapes and the state dict are unchanged):

  * `DecodeLinear` / `decode_linear`: at batch 1 a decode step multiplies one activation row by every weight
    matrix, so its speed is the rate at which the weights stream from memory. Products with no autograd, fp32,
    on the CPU, of at most `NATIVE_MAX_ROWS` rows and a contiguous row-major weight go to the native GEMV
    (zerollm.kernels), which reads each weight row once for up to 8 activation rows; prompts (many rows) and
    training keep torch's GEMM. Every nn.Linear becomes a DecodeLinear (same parameters), and `logits` sends
    the tied output projection through the same GEMV.
  * `DecodePlan` (decode_plan.py): each step of at most NATIVE_MAX_ROWS tokens runs through all blocks in one
    native call; `forward` uses it when `plan.applies` and runs `model(...)` otherwise (training, gradients,
    long prompts, other dtypes/devices, a module swapped in since the plan was built such as LoRA).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zerollm.kernels import NATIVE_MAX_ROWS

from .decode_plan import DecodePlan


def native_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False  # the kernel has no backward
    k = x.shape[-1]
    return (x.numel() <= NATIVE_MAX_ROWS * k and k % 32 == 0 and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.device.type == "cpu" and weight.is_contiguous())


_gemv_f32 = None  # torch.ops.zerollm_kernels.gemv_f32 once loaded (looked up once: this runs ~70x per token)


def decode_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x Wᵀ + b, through the native GEMV when it applies (kernels built, see `native_applies`)."""
    global _gemv_f32
    if native_applies(x, weight):
        if _gemv_f32 is None:
            from zerollm import kernels

            if not kernels.load():
                return F.linear(x, weight, bias)
            _gemv_f32 = kernels.ops().gemv_f32
        return _gemv_f32(x, weight, bias)
    return F.linear(x, weight, bias)


class DecodeLinear(nn.Linear):
    """An nn.Linear whose forward uses `decode_linear` (parameters and state dict unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return decode_linear(x, self.weight, self.bias)


@torch.no_grad()
def optimize_for_decode(model, enable: bool = True, native: bool | None = None):
    """Prepare `model`'s matmuls for fast batch-1 decoding; returns the model.

    With the native kernels (`native=None` uses them on CPU when they build, ~20 s once) every Linear becomes
    a `DecodeLinear` with its weight row-major, and a `DecodePlan` is attached for `forward`: on GPT-2-124M,
    2 threads, 50 vs 30 tokens/s (MKL) at batch 1 and 4.8x batch 1 aggregate at batch 8
    (bench/bench_decode.py). Quantized models (QuantLinear layers) get the plan too. Without the kernels the
    weights are re-laid out for MKL: on CPU y = x @ W^T runs 1.3-1.8x faster when W^T is contiguous, i.e. when
    the (out, in) weight is stored column-major, for every weight whose output is at least as wide as its
    input; those weights get strides (1, out). Training works with either; serialisers that insist on
    contiguous tensors (safetensors) need `.contiguous()`, or `optimize_for_decode(model, False)` first.
    """
    if native is None:
        from zerollm import kernels
        native = enable and model.tok_emb.weight.device.type == "cpu" and kernels.load()
    model._native_decode = bool(enable and native)
    for module in model.modules():
        if type(module) in (nn.Linear, DecodeLinear):
            module.__class__ = DecodeLinear if model._native_decode else nn.Linear
        w = module.weight if isinstance(module, (nn.Linear, nn.Embedding)) else None
        if w is None or not isinstance(w, torch.Tensor) or w.dim() != 2:
            continue
        out_features, in_features = w.shape
        if enable and not native and out_features >= in_features:
            w.data = w.data.t().contiguous().t()  # same (out, in) tensor, column-major storage
        else:
            w.data = w.data.contiguous()
    model._decode_plan = DecodePlan.build(model) if model._native_decode else None
    return model


def forward(model, idx: torch.Tensor, cache, positions: torch.Tensor | None = None) -> torch.Tensor:
    """`model(idx, cache=cache, positions=positions, return_hidden=True)`: hidden states (B, T, D) after the
    final norm, with every block in one native call when the model's plan applies to this step."""
    plan = getattr(model, "_decode_plan", None)
    if plan is None or not plan.applies(model, idx, cache):
        return model(idx, cache=cache, positions=positions, return_hidden=True)
    x, rope = model.embed(idx, cache.pos, positions)  # (B, T, D), RoPE cos/sin of the new positions
    x = plan.run(x, cache, rope)  # writes the new keys/values at slots [pos, pos + T) of every layer
    cache.advance(idx.shape[1])
    return model.norm_f(x)


def logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """`model.logits(hidden)`, with a tied output projection through the native GEMV once optimized."""
    if getattr(model, "_native_decode", False) and model.lm_head is None:
        return decode_linear(hidden, model.tok_emb.weight).float()
    return model.logits(hidden)
