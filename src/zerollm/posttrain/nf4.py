"""4-bit NormalFloat (NF4) weights for QLoRA (Dettmers et al. 2023, "QLoRA", sec. 3).

A frozen weight W (out, in) is stored as 4-bit codes into the 16 NF4 levels (quantiles of N(0, 1) scaled
to [-1, 1], with an exact zero), one absmax scale per block of 64 consecutive values:

    c_j = argmin_k |W_j / absmax(block(j)) − NF4[k]|          4 bits, two codes per uint8
    Ŵ_j = NF4[c_j] · absmax(block(j))

Double quantization (QLoRA sec. 3, "Double Quantization"): the fp32 absmaxes are themselves quantized to
int8 in blocks of 256 after subtracting their mean: absmax ≈ q8 · s2 + mean, s2 one fp32 per 256 scales.
Storage ≈ 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per weight.

`NF4Linear` dequantizes on the fly (y = x Ŵᵀ + b; frozen), `NF4LoRALinear` adds LoRA (lora.py) on top:
QLoRA = LoRA over an NF4 base. `quantize_nf4(model, targets)` swaps matching nn.Linear layers in place.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The 16 NF4 levels (QLoRA appendix E; bitsandbytes `NF4` table).
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
BLOCK, SCALE_BLOCK = 64, 256


def quantize(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """W (any shape, numel % 64 == 0) → packed codes (numel/2 uint8), int8 scales, fp32 scale-of-scales, mean."""
    flat = w.detach().float().reshape(-1, BLOCK)  # (nb, 64)
    absmax = flat.abs().amax(1).clamp_min(1e-12)  # (nb,)
    codes = ((flat / absmax[:, None]).unsqueeze(-1) - NF4_LEVELS.to(w.device)).abs().argmin(-1).to(torch.uint8)
    codes = codes.reshape(-1)
    packed = (codes[0::2] << 4) | codes[1::2]  # (numel/2,)
    mean = absmax.mean()
    centered = absmax - mean
    pad = (-centered.numel()) % SCALE_BLOCK
    blocks = F.pad(centered, (0, pad)).reshape(-1, SCALE_BLOCK)  # (ns, 256)
    s2 = blocks.abs().amax(1).clamp_min(1e-12) / 127.0
    q8 = torch.round(blocks / s2[:, None]).clamp(-127, 127).to(torch.int8).reshape(-1)[:centered.numel()]
    return {"packed": packed, "scales_q8": q8, "scales_s2": s2, "scales_mean": mean.reshape(1)}


def dequantize(q: dict[str, torch.Tensor], shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    packed = q["packed"]
    codes = torch.stack([packed >> 4, packed & 0xF], -1).reshape(-1).long()  # (numel,)
    s2 = q["scales_s2"].repeat_interleave(SCALE_BLOCK)[:q["scales_q8"].numel()]
    absmax = q["scales_q8"].float() * s2 + q["scales_mean"]  # (nb,)
    w = NF4_LEVELS.to(packed.device)[codes].reshape(-1, BLOCK) * absmax[:, None]
    return w.reshape(shape).to(dtype)


class NF4Linear(nn.Module):
    """A frozen linear layer with NF4 weights (buffers, not parameters), dequantized per forward."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        if base.weight.numel() % BLOCK:
            raise ValueError(f"NF4 needs weight sizes divisible by {BLOCK}, got {tuple(base.weight.shape)}")
        for k, v in quantize(base.weight).items():
            self.register_buffer(k, v)
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(), requires_grad=False)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize({k: getattr(self, k) for k in ("packed", "scales_q8", "scales_s2", "scales_mean")},
                          (self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)


def _lora_linear_cls():
    from zerollm.posttrain.lora import LoRAMixin

    class NF4LoRALinear(LoRAMixin, NF4Linear):
        """QLoRA layer: frozen NF4 base + trainable fp32 LoRA (lora.LoRAMixin). Merging is not offered
        (it would need re-quantization); save the adapter instead."""

        def __init__(self, base: NF4Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
            nn.Module.__init__(self)
            self.in_features, self.out_features = base.in_features, base.out_features
            for k in ("packed", "scales_q8", "scales_s2", "scales_mean"):
                self.register_buffer(k, getattr(base, k))
            self.bias = base.bias
            self._init_lora(self.in_features, self.out_features, r, alpha, dropout, rslora, base.packed.device)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lora_forward(x, NF4Linear.forward(self, x))

        def merge(self) -> None:
            raise ValueError("cannot merge LoRA into NF4 weights; save the adapter (QLoRA)")

        unmerge = merge
    return NF4LoRALinear


class _Lazy:
    cls = None


def __getattr__(name: str):  # NF4LoRALinear is built on first use (lora.py imports this module)
    if name == "NF4LoRALinear":
        if _Lazy.cls is None:
            _Lazy.cls = _lora_linear_cls()
        return _Lazy.cls
    raise AttributeError(name)


def quantize_nf4(model: nn.Module, targets=None) -> list[str]:
    """Swap matching nn.Linear layers (default: all in the transformer blocks) for NF4Linear; freeze all."""
    from zerollm.posttrain.lora import DEFAULT_TARGETS, _set_module, matches

    targets = DEFAULT_TARGETS if targets is None else targets
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and matches(n, targets)]
    for n in names:
        _set_module(model, n, NF4Linear(model.get_submodule(n)))
    for p in model.parameters():
        p.requires_grad_(False)
    return names


def nf4_bytes(model: nn.Module) -> int:
    return sum(b.numel() * b.element_size() for n, b in model.named_buffers()
               if n.rsplit(".", 1)[-1] in ("packed", "scales_q8", "scales_s2", "scales_mean"))
