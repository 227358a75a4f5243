"""4-bit NormalFloat (NF4) weights for QLoRA (Dettmers et al. 2023, "QLoRA", sec. 3).

A frozen weight W (out, in) is stored as 4-bit codes into the 16 NF4 levels (quantiles of N(0, 1) scaled
to [-1, 1], with an exact zero), one absmax scale per block of 64 consecutive values:

    c_j = argmin_k |W_j / absmax(block(j)) − NF4[k]|          4 bits, two codes per uint8
    Ŵ_j = NF4[c_j] · absmax(block(j))

Double quantization (QLoRA sec. 3, "Double Quantization"): the fp32 absmaxes are themselves quantized to
int8 in blocks of 256 after subtracting their mean: absmax ≈ q8 · s2 + mean, s2 one fp32 per 256 scales.
Storage ≈ 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per weight.

`NF4Linear` dequantizes on the fly (y = x Ŵᵀ + b; frozen), `NF4LoRALinear` adds LoRA (lora.py) on top:
QLoRA = LoRA over an NF4 base. `quantize_nf4(model, targets)` swaps matching nn.Linear layers in place;
`load_nf4_model(dir, targets)` builds the NF4 model straight from a checkpoint's safetensors, one tensor at
a time (read, quantize, drop), so the fp32 base is never resident as a whole.

Memory: the fp32 weight is rebuilt per forward and *not* kept for backward (`_NF4Matmul` saves the 4-bit
buffers and dequantizes again for ∂L/∂x, as bitsandbytes does); otherwise autograd would hold every
layer's fp32 weight from forward to backward — the whole fp32 base again.
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
    # nearest level = number of level midpoints below the value (levels sorted): O(n) memory
    mids = ((NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2).to(w.device)
    codes = torch.bucketize(flat / absmax[:, None], mids).to(torch.uint8).reshape(-1)
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


_NF4_KEYS = ("packed", "scales_q8", "scales_s2", "scales_mean")


class _NF4Matmul(torch.autograd.Function):
    """y = x Ŵᵀ with Ŵ dequantized in forward and again in backward (nothing fp32 is saved; Ŵ is frozen)."""

    @staticmethod
    def forward(ctx, x, shape, *q):
        ctx.shape = shape
        ctx.save_for_backward(*q)
        return F.linear(x, dequantize(dict(zip(_NF4_KEYS, q)), shape, x.dtype))

    @staticmethod
    def backward(ctx, grad):
        q = ctx.saved_tensors
        gx = grad @ dequantize(dict(zip(_NF4_KEYS, q)), ctx.shape, grad.dtype) if ctx.needs_input_grad[0] else None
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
        numel = in_features * out_features
        if numel % BLOCK:
            raise ValueError(f"NF4 needs weight sizes divisible by {BLOCK}, got {(out_features, in_features)}")
        nb = numel // BLOCK
        for k, v in {"packed": torch.zeros(numel // 2, dtype=torch.uint8, device=device),
                     "scales_q8": torch.zeros(nb, dtype=torch.int8, device=device),
                     "scales_s2": torch.zeros(-(-nb // SCALE_BLOCK), device=device),
                     "scales_mean": torch.zeros(1, device=device)}.items():
            self.register_buffer(k, v)
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        if base is not None:
            self.load_weight(base.weight, base.bias)

    @torch.no_grad()
    def load_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"NF4Linear: weight shape {tuple(weight.shape)}, expected "
                             f"{(self.out_features, self.in_features)}")
        for k, v in quantize(weight).items():
            getattr(self, k).copy_(v)
        if bias is not None:
            self.bias.copy_(bias)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize({k: getattr(self, k) for k in _NF4_KEYS}, (self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _NF4Matmul.apply(x, (self.out_features, self.in_features), *(getattr(self, k) for k in _NF4_KEYS))
        return y if self.bias is None else y + self.bias.to(y.dtype)


def _lora_linear_cls():
    from zerollm.posttrain.lora import LoRAMixin

    class NF4LoRALinear(LoRAMixin, NF4Linear):
        """QLoRA layer: frozen NF4 base + trainable fp32 LoRA (lora.LoRAMixin). Merging is not offered
        (it would need re-quantization); save the adapter instead."""

        def __init__(self, base: NF4Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
            nn.Module.__init__(self)
            self.in_features, self.out_features = base.in_features, base.out_features
            for k in _NF4_KEYS:
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
    return sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in _NF4_KEYS)


def load_nf4_model(path, targets=None, device="cpu", with_tokenizer: bool = True):
    """(model, tokenizer, checkpoint dir) like zerollm.loading.load, with the matching linear layers
    NF4 from the start: the model is allocated uninitialized (its pages are not resident until written),
    the target layers are swapped for empty NF4Linear before any weight is read, and the safetensors file is
    read one tensor at a time — a target weight is quantized into its NF4 buffers and dropped. Peak memory
    is the 4-bit base + the non-quantized tensors + one fp32 tensor. Everything is frozen.
    Hugging Face and already-quantized checkpoints are loaded whole and then quantized (quantize_nf4)."""
    from pathlib import Path

    from safetensors import safe_open

    from zerollm.artifacts import read_manifest
    from zerollm.interop.hf import is_hf_dir
    from zerollm.interop.weights import empty_model
    from zerollm.posttrain.lora import DEFAULT_TARGETS, _set_module, matches
    from zerollm.loading import load, load_model_config, resolve_checkpoint

    targets = DEFAULT_TARGETS if targets is None else targets
    ckpt = resolve_checkpoint(path)
    if is_hf_dir(ckpt) or (ckpt / "quant.json").is_file():
        loaded = load(ckpt, device, with_tokenizer=with_tokenizer)
        model, tok, ckpt = loaded.model, loaded.tokenizer, loaded.path
        quantize_nf4(model, targets)
        return model, tok, ckpt
    read_manifest(ckpt, "checkpoint")
    model = empty_model(load_model_config(ckpt))
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and matches(n, targets)]
    for n in names:
        lin = model.get_submodule(n)
        _set_module(model, n, NF4Linear(in_features=lin.in_features, out_features=lin.out_features,
                                        bias=lin.bias is not None))
    nf4 = {n + ".weight": n for n in names}
    params = dict(model.named_parameters())
    aliases = set(model.state_dict()) - set(params)  # tied weights saved under a second name
    file = ckpt / "model.safetensors"
    filled = set()
    with torch.no_grad(), safe_open(str(file), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            if key in nf4:
                mod = model.get_submodule(nf4[key])
                mod.load_weight(t)
            elif key in params:
                if tuple(t.shape) != tuple(params[key].shape):
                    raise ValueError(f"{file}: tensor {key!r} has shape {tuple(t.shape)}, the model expects "
                                     f"{tuple(params[key].shape)}")
                params[key].copy_(t)
            elif key not in aliases:
                raise ValueError(f"{file}: unexpected tensor {key!r} (weights do not match the model config)")
            filled.add(key)
            del t
    missing = [k for k in list(params) + list(nf4) if k not in filled]
    if missing:
        raise ValueError(f"{file}: missing tensor(s) {missing[:5]}")
    model.requires_grad_(False)
    tok = None
    if with_tokenizer and (ckpt / "tokenizer").is_dir():
        from zerollm.tokenizer.base import load_tokenizer

        tok = load_tokenizer(ckpt / "tokenizer")
    return model.to(device).eval(), tok, Path(ckpt)
