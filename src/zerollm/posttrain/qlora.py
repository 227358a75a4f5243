"""QLoRA (Dettmers et al. 2023): LoRA (lora.py) over a frozen base whose linear layers are stored in 4-bit NF4.

The NF4 codec is model/quant.py's, the one `zerollm quantize --scheme nf4` writes: 16 levels at the quantiles
of N(0, 1), one absmax per block of 64 values, the absmaxes double-quantized to int8 (≈ 4.127 bits per
weight; formulas in model/quant.py). This module adds what *training* over such weights needs:

    NF4Linear      a frozen linear layer holding the codec's tensors as buffers; y = x Ŵᵀ + b
    NF4LoRALinear  NF4Linear + trainable fp32 LoRA: the QLoRA layer (apply_lora picks it for NF4Linear)
    quantize_nf4(model, targets)    swap matching nn.Linear layers for NF4Linear, in place
    load_nf4_model(dir, targets)    build the NF4 model straight from a checkpoint's safetensors, one tensor
                                    at a time (read, quantize, drop): the fp32 base is never resident whole

Memory: the fp32 weight is rebuilt per forward and *not* kept for backward (`_NF4Matmul` saves the 4-bit
buffers and dequantizes again for ∂L/∂x, as bitsandbytes does); otherwise autograd would hold every
layer's fp32 weight from forward to backward — the whole fp32 base again.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zerollm.loading import Loaded, load
from zerollm.model.quant import NF4_BLOCK, buffer_shapes, dequantize_weight, quantize_weight
from zerollm.posttrain.lora import DEFAULT_TARGETS, LORA_LAYERS, LoRAMixin, _set_module, resolve_targets

# NF4Linear's buffer ← the codec's tensor of the same meaning. The buffer names (and `packed` being flat,
# numel/2 bytes) are kept as they were: QLoRA run checkpoints (checkpoints/step-N) store them under these names.
_BUFFERS = {"packed": "qweight", "scales_q8": "absmax_q8", "scales_s2": "absmax_s2", "scales_mean": "absmax_mean"}


def _codec_tensors(q: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """NF4Linear's buffers (in _BUFFERS order) under the codec's names, for dequantize_weight."""
    return dict(zip(_BUFFERS.values(), q))


class _NF4Matmul(torch.autograd.Function):
    """y = x Ŵᵀ with Ŵ dequantized in forward and again in backward (nothing fp32 is saved; Ŵ is frozen)."""

    @staticmethod
    def forward(ctx, x, shape, *q):
        ctx.shape = shape
        ctx.save_for_backward(*q)
        return F.linear(x, dequantize_weight(_codec_tensors(q), "nf4", shape, x.dtype))

    @staticmethod
    def backward(ctx, grad):
        q = ctx.saved_tensors
        # y = x Ŵᵀ  ⇒  ∂L/∂x = ∂L/∂y · Ŵ; Ŵ itself gets no gradient (frozen)
        gx = grad @ dequantize_weight(_codec_tensors(q), "nf4", ctx.shape, grad.dtype) \
            if ctx.needs_input_grad[0] else None
        return (gx, None) + (None,) * len(q)


class NF4Linear(nn.Module):
    """A frozen linear layer with NF4 weights (buffers, not parameters), dequantized per forward."""

    def __init__(self, base: nn.Linear | None = None, *, in_features: int = 0, out_features: int = 0,
                 bias: bool = False, device=None):
        """From an nn.Linear (quantized now), or empty buffers for (in_features, out_features) that
        `load_weight` fills."""
        super().__init__()
        if base is not None:
            in_features, out_features, bias, device = (base.in_features, base.out_features, base.bias is not None,
                                                       base.weight.device)
        self.in_features, self.out_features = in_features, out_features
        if (in_features * out_features) % NF4_BLOCK or in_features % 2:
            raise ValueError(f"NF4 needs weight sizes divisible by {NF4_BLOCK} and an even number of input "
                             f"features, got {(out_features, in_features)}")
        shapes = buffer_shapes("nf4", out_features, in_features, NF4_BLOCK)
        for ours, codec in _BUFFERS.items():
            shape, dtype = shapes[codec]
            self.register_buffer(ours, torch.zeros(math.prod(shape), dtype=dtype, device=device))  # stored flat
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        if base is not None:
            self.load_weight(base.weight, base.bias)

    @torch.no_grad()
    def load_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"NF4Linear: weight shape {tuple(weight.shape)}, expected "
                             f"{(self.out_features, self.in_features)}")
        q = quantize_weight(weight, "nf4")
        for ours, codec in _BUFFERS.items():
            buf = getattr(self, ours)
            buf.copy_(q[codec].reshape(buf.shape))
        if bias is not None:
            self.bias.copy_(bias)

    def nf4_buffers(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, k) for k in _BUFFERS)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize_weight(_codec_tensors(self.nf4_buffers()), "nf4", (self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _NF4Matmul.apply(x, (self.out_features, self.in_features), *self.nf4_buffers())
        return y if self.bias is None else y + self.bias.to(y.dtype)


class NF4LoRALinear(LoRAMixin, NF4Linear):
    """QLoRA layer: frozen NF4 base + trainable fp32 LoRA (lora.LoRAMixin): h = Ŵ x + b + s·B A x.
    Merging is not offered (it would need re-quantization); save the adapter instead."""

    def __init__(self, base: NF4Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        for k in _BUFFERS:  # the base's 4-bit buffers themselves, not copies
            self.register_buffer(k, getattr(base, k))
        self.bias = base.bias
        self._init_lora(self.in_features, self.out_features, r, alpha, dropout, rslora, base.packed.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_forward(x, NF4Linear.forward(self, x))

    def merge(self) -> None:
        raise ValueError("cannot merge LoRA into NF4 weights; save the adapter (QLoRA)")

    unmerge = merge


LORA_LAYERS[NF4Linear] = NF4LoRALinear  # apply_lora puts NF4LoRALinear on every targeted NF4Linear


def quantize_nf4(model: nn.Module, targets=None) -> list[str]:
    """Swap matching nn.Linear layers (default: all in the transformer blocks) for NF4Linear; freeze all."""
    targets = DEFAULT_TARGETS if targets is None else targets
    names = [n for n in resolve_targets(model, targets)[0] if type(model.get_submodule(n)) is nn.Linear]
    for n in names:
        _set_module(model, n, NF4Linear(model.get_submodule(n)))
    for p in model.parameters():
        p.requires_grad_(False)
    return names


def nf4_bytes(model: nn.Module) -> int:
    return sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in _BUFFERS)


def load_nf4_model(path, targets=None, device="cpu", with_tokenizer: bool = True) -> Loaded:
    """`zerollm.loading.load` with the matching linear layers NF4 from the start: the model is allocated
    uninitialized (its pages are not resident until written), the target layers are swapped for empty
    NF4Linear before any weight is read, and each target weight is quantized into its NF4 buffers as the
    loader streams it (a few tensors mapped at a time). Peak memory is the 4-bit base + the other tensors +
    one read batch. Everything is frozen. Hugging Face and already-quantized checkpoints are loaded whole
    and then quantized (quantize_nf4)."""
    targets = DEFAULT_TARGETS if targets is None else targets

    def to_nf4(model) -> dict:  # before any weight is read: matching Linear → empty NF4Linear, filled per tensor
        fills = {}
        for n in [n for n in resolve_targets(model, targets)[0] if type(model.get_submodule(n)) is nn.Linear]:
            lin = model.get_submodule(n)
            nf4 = NF4Linear(in_features=lin.in_features, out_features=lin.out_features, bias=lin.bias is not None)
            _set_module(model, n, nf4)
            fills[n + ".weight"] = ((lin.out_features, lin.in_features), nf4.load_weight)
        return fills

    loaded = load(path, device, with_tokenizer=with_tokenizer, prepare=to_nf4)
    quantize_nf4(loaded.model, targets)  # HF or quantized checkpoints (loaded whole); a no-op after to_nf4
    loaded.model.requires_grad_(False)
    return loaded
