"""Weight-only quantization of every Linear: int8 per output channel, int4 group-wise (symmetric or
asymmetric) and NF4 with double quantization. Activations are not stored quantized; the decode kernel rounds
them per block of 32 on the fly (below), a far finer rounding than dynamic int8's one scale per tensor, which
diverges in greedy decoding.

Schemes (W is (out, in); a group is `group_size` consecutive input columns of one output row):

    int8       q = round(W / s), s = absmax(row) / 127            W ≈ q · s              (8 bits + 32/in)
    int4-sym   q = round(W / s) ∈ [-8, 7], s = absmax(group) / 7                        (4 + 32/g bits)
    int4-asym  q = round((W - min) / s) ∈ [0, 15], s = (max - min) / 15, W ≈ q · s + min   (4 + 64/g)
    nf4        q = nearest NF4 level of W / absmax(block of 64); the absmaxes are themselves int8
               in blocks of 256 after subtracting their mean ("double quantization")     (≈ 4.127 bits)

int4 (Frantar/Dettmers-style group-wise rounding-to-nearest) and NF4 (Dettmers et al. 2023, "QLoRA",
sec. 3: 16 levels at the quantiles of N(0, 1), exact zero; blockwise absmax; double quantization) pack two
4-bit codes per byte. NF4 in full, for the block b(j) of 64 consecutive values (row-major) holding W_j:

    c_j = argmin_k |W_j / absmax_b(j) − NF4[k]|,   Ŵ_j = NF4[c_j] · absmax_b(j)
    absmax_b ≈ q8_b · s2 + mean      (q8 int8; one fp32 s2 per 256 absmaxes; storage 4 + 8/64 + 32/(64·256) bits)

This is the one NF4 codec: the QLoRA base layers (posttrain/qlora.py) store the same tensors.

Kernels (`QuantLinear.kernel`):
  "native"   zerollm.kernels' GEMV (gemv.cpp, compiled on first use) for decode-sized inputs (at most
             `NATIVE_MAX_ROWS` rows; prompts use "dequant"): only the codes cross the memory bus, and each
             32-value block is multiplied in integers against activations rounded to int8 per block of 32
             (as llama.cpp's q8_0 dot products; ≤ 1/254 of the block max per activation), so outputs differ
             from the dequantized Linear by ~0.5 % of their scale (tests/model/test_model_quant.py bounds it).
  "dequant"  dequantize to the activation dtype, then F.linear; with cache="dequant" the fp32 copy is kept
             (fp32 speed, fp32 memory). The fallback when the native kernels cannot be built.
  "aten"     torch's `_weight_int8pack_mm` (int8 only), for comparison: 3-10x slower than fp32 GEMV at
             batch 1 on this AVX2 build (bench/bench_decode.py).
The default, kernel="auto", picks "native" when the kernels load and otherwise "dequant" with the cache.

The token embedding stays float (a lookup reads one row per token). The output projection is quantized
too, to int8 by default whatever the body's scheme (`output_scheme`; llama.cpp likewise keeps the output at
q6_K/q8_0 in its 4-bit formats): at batch 1 the V x D projection is the largest single read per token, and
it is the layer whose rounding most changes greedy choices. A tied projection becomes its own quantized
`lm_head`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zerollm import kernels
from zerollm.kernels import NATIVE_MAX_ROWS, ops  # NATIVE_MAX_ROWS: rows up to which the native GEMV wins
from zerollm.model.transformer import Transformer

SCHEMES = ("int8", "int4-sym", "int4-asym", "nf4")
# the 16 NF4 levels (QLoRA appendix E; bitsandbytes' `NF4` table)
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
NF4_BLOCK, NF4_SCALE_BLOCK = 64, 256  # values per absmax; absmaxes per double-quantization scale
KERNELS = ("auto", "native", "dequant", "aten")


def _pack4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes in [0, 15], last dim even -> two per byte (high nibble first)."""
    return (codes[..., 0::2] << 4) | codes[..., 1::2]


def _unpack4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed >> 4, packed & 0xF], -1).flatten(-2)


def quantize_weight(w: torch.Tensor, scheme: str, group_size: int = 32) -> dict[str, torch.Tensor]:
    """W (out, in) -> the tensors that store it under `scheme` (see the module docstring)."""
    w = w.detach().float()
    N, K = w.shape
    if scheme == "int8":
        s = (w.abs().amax(1) / 127).clamp_min(1e-12)  # (N,)
        return {"qweight": torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8), "scales": s}
    if scheme in ("int4-sym", "int4-asym"):
        if K % group_size:
            raise ValueError(f"in_features {K} is not divisible by group_size {group_size}")
        g = w.view(N, K // group_size, group_size)
        if scheme == "int4-sym":
            s = (g.abs().amax(-1) / 7).clamp_min(1e-12)  # (N, G)
            q = torch.round(g / s[..., None]).clamp(-8, 7) + 8
            return {"qweight": _pack4(q.to(torch.uint8).view(N, K)), "scales": s}
        lo, hi = g.amin(-1), g.amax(-1)
        s = ((hi - lo) / 15).clamp_min(1e-12)
        q = torch.round((g - lo[..., None]) / s[..., None]).clamp(0, 15)
        return {"qweight": _pack4(q.to(torch.uint8).view(N, K)), "scales": s, "mins": lo}
    if scheme == "nf4":
        if (N * K) % NF4_BLOCK:
            raise ValueError(f"NF4 needs weight sizes divisible by {NF4_BLOCK}, got {(N, K)}")
        flat = w.reshape(-1, NF4_BLOCK)
        absmax = flat.abs().amax(1).clamp_min(1e-12)
        # nearest level = how many level midpoints lie below the value (the levels are sorted): O(n)
        # memory, where an argmin over the 16 distances would hold 16 floats per weight
        mids = ((NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2).to(w.device)
        codes = torch.bucketize(flat / absmax[:, None], mids).to(torch.uint8)
        mean = absmax.mean()
        centered = absmax - mean
        pad = (-centered.numel()) % NF4_SCALE_BLOCK
        blocks = F.pad(centered, (0, pad)).view(-1, NF4_SCALE_BLOCK)
        s2 = (blocks.abs().amax(1) / 127).clamp_min(1e-12)
        q8 = torch.round(blocks / s2[:, None]).clamp(-127, 127).to(torch.int8).flatten()[:centered.numel()]
        return {"qweight": _pack4(codes.view(N, K)), "absmax_q8": q8, "absmax_s2": s2,
                "absmax_mean": mean.view(1)}
    raise ValueError(f"unknown quantization scheme {scheme!r} (choose from {', '.join(SCHEMES)})")


def dequantize_weight(q: dict[str, torch.Tensor], scheme: str, shape: tuple[int, int],
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    N, K = shape
    if scheme == "int8":
        return (q["qweight"].to(dtype) * q["scales"].to(dtype)[:, None])
    if scheme in ("int4-sym", "int4-asym"):
        codes = _unpack4(q["qweight"]).to(dtype)  # (N, K)
        G = q["scales"].shape[1]
        g = codes.view(N, G, K // G)
        if scheme == "int4-sym":
            return ((g - 8) * q["scales"].to(dtype)[..., None]).view(N, K)
        return (g * q["scales"].to(dtype)[..., None] + q["mins"].to(dtype)[..., None]).view(N, K)
    codes = _unpack4(q["qweight"]).long().view(-1, NF4_BLOCK)
    s2 = q["absmax_s2"].repeat_interleave(NF4_SCALE_BLOCK)[:q["absmax_q8"].numel()]
    absmax = q["absmax_q8"].float() * s2 + q["absmax_mean"]
    return (NF4_LEVELS.to(codes.device)[codes] * absmax[:, None]).view(N, K).to(dtype)


class QuantLinear(nn.Module):
    """A Linear whose weight is stored quantized (buffers); y = x Ŵᵀ + b. Inference only."""

    def __init__(self, in_features: int, out_features: int, bias: bool, scheme: str, group_size: int = 32,
                 cache: str | None = "auto", kernel: str = "auto"):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r} (choose from {', '.join(KERNELS)})")
        self.in_features, self.out_features, self.scheme, self.group_size = in_features, out_features, scheme, group_size
        self.cache_mode, self.kernel = cache, kernel
        shapes = buffer_shapes(scheme, out_features, in_features, group_size)
        for name, (shape, dtype) in shapes.items():
            self.register_buffer(name, torch.zeros(shape, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._w: torch.Tensor | None = None  # cached dequantized weight (not in the state dict)

    @classmethod
    def from_linear(cls, lin: nn.Linear, scheme: str, group_size: int = 32, **kw) -> "QuantLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, scheme, group_size, **kw)
        for name, t in quantize_weight(lin.weight, scheme, group_size).items():
            getattr(q, name).copy_(t)
        if lin.bias is not None:
            q.bias.data.copy_(lin.bias.detach())
        return q.to(lin.weight.device)

    def quant_tensors(self) -> dict[str, torch.Tensor]:
        return {n: b for n, b in self.named_buffers(recurse=False)}

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_weight(self.quant_tensors(), self.scheme, (self.out_features, self.in_features), dtype)

    def _load_from_state_dict(self, *args, **kwargs):
        self._w = None  # new codes: drop the cached weight
        return super()._load_from_state_dict(*args, **kwargs)

    def native_ok(self) -> bool:
        """Whether the native GEMV applies to this layer's shape (and the kernels are built)."""
        step = NF4_BLOCK if self.scheme == "nf4" else 32
        shape_ok = self.in_features % step == 0 and (not self.scheme.startswith("int4") or self.group_size % 32 == 0)
        if self.kernel == "dequant" or not shape_ok:
            return False
        return kernels.load()

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        k, b = ops(), self.bias
        if self.scheme == "int8":
            return k.gemv_int8(x, self.qweight, self.scales, b)
        if self.scheme == "int4-sym":
            return k.gemv_int4(x, self.qweight, self.scales, None, self.group_size, b)
        if self.scheme == "int4-asym":
            return k.gemv_int4(x, self.qweight, self.scales, self.mins, self.group_size, b)
        return k.gemv_nf4(x, self.qweight, NF4_LEVELS, self.absmax_q8, self.absmax_s2, float(self.absmax_mean), b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "aten" and self.scheme == "int8" and x.dtype == torch.float32:
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.in_features), self.qweight, self.scales)
            y = y.view(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        rows = x.numel() // self.in_features
        native = self._use_native()
        if native and rows <= NATIVE_MAX_ROWS and x.dtype == torch.float32 and x.device.type == "cpu" \
                and not (x.requires_grad and torch.is_grad_enabled()):  # no autograd in the kernel
            return self._native(x)
        if self.cache_mode == "dequant" or (self.cache_mode == "auto" and not native):
            if self._w is None or self._w.dtype != x.dtype or self._w.device != x.device:
                # column-major when widening: the fast GEMV layout (see engine/native.py optimize_for_decode)
                w = self.dequantize(x.dtype)
                self._w = w.t().contiguous().t() if self.out_features >= self.in_features else w
            w = self._w
        else:
            w = self.dequantize(x.dtype)
        return F.linear(x, w, self.bias)

    def _use_native(self) -> bool:
        ok = getattr(self, "_native_ok", None)
        if ok is None:
            ok = self._native_ok = self.native_ok()
        return ok

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, scheme={self.scheme}, "
                f"group_size={self.group_size}, cache={self.cache_mode}, kernel={self.kernel}")


def buffer_shapes(scheme: str, N: int, K: int, g: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{tensor name: (shape, dtype)} that `quantize_weight` returns for an (N, K) weight under `scheme`."""
    if scheme == "int8":
        return {"qweight": ((N, K), torch.int8), "scales": ((N,), torch.float32)}
    if scheme == "int4-sym":
        return {"qweight": ((N, K // 2), torch.uint8), "scales": ((N, K // g), torch.float32)}
    if scheme == "int4-asym":
        return {"qweight": ((N, K // 2), torch.uint8), "scales": ((N, K // g), torch.float32),
                "mins": ((N, K // g), torch.float32)}
    if scheme == "nf4":
        nb = N * K // NF4_BLOCK
        return {"qweight": ((N, K // 2), torch.uint8), "absmax_q8": ((nb,), torch.int8),
                "absmax_s2": ((-(-nb // NF4_SCALE_BLOCK),), torch.float32), "absmax_mean": ((1,), torch.float32)}
    raise ValueError(f"unknown quantization scheme {scheme!r} (choose from {', '.join(SCHEMES)})")


def quantize_model(model: nn.Module, scheme: str, group_size: int = 32, skip: tuple[str, ...] = (),
                   output_scheme: str | None = "int8", **kw) -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by a QuantLinear; returns the model. Layers whose
    name is in `skip` or whose shape does not fit the scheme's grouping stay float. The output projection
    gets `output_scheme` (None: stays float); a tied one becomes a separate quantized `lm_head` (the token
    embedding stays float for lookups)."""
    if output_scheme is not None and output_scheme not in SCHEMES:
        raise ValueError(f"unknown output scheme {output_scheme!r} (choose from {', '.join(SCHEMES)})")
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            sch = output_scheme if full == "lm_head" else scheme
            if isinstance(child, nn.Linear) and sch and full not in skip and _fits(child, sch, group_size):
                setattr(module, child_name, QuantLinear.from_linear(child, sch, group_size, **kw))
    emb = getattr(model, "tok_emb", None)
    if output_scheme and getattr(model, "lm_head", False) is None and emb is not None and "lm_head" not in skip:
        head = nn.Linear(emb.weight.shape[1], emb.weight.shape[0], bias=False)
        head.weight = emb.weight  # tied: quantize the shared table into a separate output projection
        if _fits(head, output_scheme, group_size):
            model.lm_head = QuantLinear.from_linear(head, output_scheme, group_size, **kw)
    model.quantization = {"scheme": scheme, "group_size": group_size, "output_scheme": output_scheme}
    return model


def _fits(lin: nn.Linear, scheme: str, g: int) -> bool:
    if scheme.startswith("int4"):
        return lin.in_features % g == 0 and lin.in_features % 2 == 0
    if scheme == "nf4":
        return (lin.in_features * lin.out_features) % NF4_BLOCK == 0 and lin.in_features % 2 == 0
    return True


def quantized_structure(model: nn.Module, modules: list[str], scheme: str, group_size: int,
                        output_scheme: str | None = None, **kw) -> nn.Module:
    """Swap the named Linear modules for empty QuantLinears (to load a quantized state dict into); a
    quantized output projection of a tied model ("lm_head" with no lm_head module) is created. The
    "lm_head" module uses `output_scheme` (files older than it used `scheme` throughout)."""
    for full in modules:
        parent_name, _, child_name = full.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        lin = getattr(parent, child_name)
        if lin is None and full == "lm_head":  # tied model whose output projection was quantized
            d, v = model.tok_emb.weight.shape[1], model.tok_emb.weight.shape[0]
            lin = nn.Linear(d, v, bias=False, device="meta")
        sch = (output_scheme or scheme) if full == "lm_head" else scheme
        setattr(parent, child_name, QuantLinear(lin.in_features, lin.out_features, lin.bias is not None, sch,
                                                group_size, **kw))
    model.quantization = {"scheme": scheme, "group_size": group_size, "output_scheme": output_scheme}
    return model


def quant_manifest(model: nn.Module) -> dict:
    q = getattr(model, "quantization", None)
    if q is None:
        raise ValueError("model is not quantized (call quantize_model first)")
    return {**q, "modules": [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]}


def load_quantized(ckpt: str | Path, cfg, device="cpu"):
    """Build the model of a quantized checkpoint (quant.json + model.safetensors) and load its tensors."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    meta = json.loads((ckpt / "quant.json").read_text(encoding="utf-8"))
    model = quantized_structure(Transformer(cfg), meta["modules"], meta["scheme"], meta["group_size"],
                                meta.get("output_scheme"))
    state = load_file(str(ckpt / "model.safetensors"), device="cpu")
    if cfg.tie_embeddings and "lm_head.weight" in state:
        state.pop("lm_head.weight")  # (older files) a tied float head is the embedding
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt / 'model.safetensors'}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


def weight_bytes(n_params: int, scheme: str, group_size: int = 32) -> float:
    """Bytes to store n_params matmul weights under a scheme (incl. scales), or a float dtype name."""
    bits = {"fp32": 32, "bf16": 16, "fp16": 16, "int8": 8 + 32 / 4096, "int4-sym": 4 + 32 / group_size,
            "int4-asym": 4 + 64 / group_size, "int4": 4 + 32 / group_size,
            "nf4": 4 + 8 / NF4_BLOCK + 32 / (NF4_BLOCK * NF4_SCALE_BLOCK)}[scheme]
    return n_params * bits / 8
