"""fp32 matmuls for decoding: the native weight-streaming GEMV (zerollm.kernels) for the few rows of a decode
step, F.linear for everything else.

At batch 1 a decode step multiplies one activation row by every weight matrix, so its speed is the rate at
which the weights stream from memory. `decode_linear` sends such products (no autograd, fp32, CPU, at most
`NATIVE_MAX_ROWS` rows, contiguous row-major weight) to the native kernel, which reads each weight row once for
up to 8 activation rows; prompts (many rows) and training keep torch's GEMM. `Transformer.optimize_for_decode`
turns this on for every Linear (by switching them to `DecodeLinear`, same parameters and state dict) and for
the tied output projection.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NATIVE_MAX_ROWS = 64


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
