"""The building blocks of the decoder: norms, rotary position embeddings, attention and MLPs.

Every variant switch in `ModelConfig` is read here or in `transformer.py`, nowhere else:

    norm      layernorm (GPT-2, Ba et al. 2016)        | rmsnorm (Llama, Zhang & Sennrich 2019)
    mlp       gelu (tanh approximation, GPT-2)         | gelu_exact (GPT-NeoX) | swiglu (Llama, Shazeer 2020)
    position  learned (GPT-2, lives in transformer.py) | rope (Su et al. 2021), optionally partial and scaled
    attention multi-head | grouped-query (n_kv_head < n_head, Ainslie et al. 2023), optional per-head
              qk-norm (Qwen3) and qkv biases (Qwen2)

Tensor shape letters: B batch, T new tokens in this call, L keys visible (cache length + T), D d_model,
H query heads, Hkv key/value heads, hd head_dim, F MLP hidden width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .dropout import dropout

# `enable_gqa` (torch >= 2.5) lets SDPA broadcast kv heads itself, without materialising repeated copies.
try:  # one tiny call at import settles whether this torch has it
    F.scaled_dot_product_attention(torch.zeros(1, 2, 1, 2), torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2),
                                   enable_gqa=True)
    _SDPA_HAS_GQA = True
except (TypeError, RuntimeError):
    _SDPA_HAS_GQA = False


# ----------------------------------------------------------------------------------------------------------
# Norms


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019, eq. 4): y = x / sqrt(mean(x^2) + eps) * g.

    No mean subtraction and no bias. Computed in float32 and cast back, as HF Llama does, so half-precision
    activations do not lose the statistic.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    """The block/final norm chosen by `cfg.norm`. LayerNorm carries a bias iff `cfg.bias`."""
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim, cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)


# ----------------------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE)


def rope_inv_freq(rot_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """Inverse frequencies theta_j = theta^(-2j/rot_dim), j = 0..rot_dim/2-1 (Su et al. 2021, eq. 15).

    `scaling` (HF's `rope_scaling` / `rope_parameters` dict) may ask for:
    - "linear": positions divided by `factor` (Chen et al. 2023, position interpolation) == inv_freq / factor.
    - "llama3": Meta's Llama 3.1 frequency-dependent rescaling (reference: meta-llama/llama-models
      `models/llama3/reference_impl/model.py::apply_scaling`, and HF `_compute_llama3_parameters`):
      wavelengths shorter than original_ctx/high_freq_factor are kept, longer than original_ctx/low_freq_factor
      are divided by `factor`, and those in between are interpolated linearly in 1/wavelength.
    """
    # computed exactly as HF does (int64 arange -> float32) so the tables agree bit for bit
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low_ff = float(scaling.get("low_freq_factor", 1.0))
        high_ff = float(scaling.get("high_freq_factor", 4.0))
        old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
        low_freq_wavelen, high_freq_wavelen = old_ctx / low_ff, old_ctx / high_ff
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)  # low freqs: / factor
        smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff)  # 0 at the low edge, 1 at the high edge
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"rope_scaling type {kind!r} is not supported (default, linear, llama3)")


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for RoPE, shared by all layers.

    Only the first `rot_dim` = int(head_dim * rotary_pct) channels of each head rotate (GPT-NeoX partial
    rotary); the rest pass through. Tables are non-persistent buffers: they follow `.to(device)` but are not
    saved in the state dict (they are a pure function of the config).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rot_dim = int(cfg.head_dim * cfg.rotary_pct)
        if self.rot_dim % 2:
            raise ValueError(f"rotary dim {self.rot_dim} (head_dim*rotary_pct) must be even")
        inv_freq = rope_inv_freq(self.rot_dim, cfg.rope_theta, cfg.rope_scaling)  # (rot_dim/2,)
        t = torch.arange(cfg.max_seq_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (max_seq_len, rot_dim/2): angle m * theta_j
        emb = torch.cat((freqs, freqs), dim=-1)  # (max_seq_len, rot_dim): rotate_half layout, pairs (j, j+rot/2)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, start: int, T: int, positions: torch.Tensor | None = None):
        """cos, sin for positions start..start+T-1, shaped (T, rot_dim); or for explicit `positions`
        (B, T) -> (B, 1, T, rot_dim) so they broadcast over heads."""
        if positions is None:
            return self.cos[start:start + T], self.sin[start:start + T]
        if positions.dim() == 1:
            return self.cos[positions], self.sin[positions]
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (j, j + rot/2) of each head by angle m*theta_j (Su et al. 2021, eq. 34,
    in the "rotate_half" channel order HF checkpoints use). x: (B, H, T, hd); cos/sin: (..., T, rot_dim)."""
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    x_rot, x_pass = x[..., :rot], x[..., rot:]  # partial rotary: only the first rot channels turn
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


# ----------------------------------------------------------------------------------------------------------
# Attention


class Attention(nn.Module):
    """Causal self-attention with separate q/k/v projections, GQA, optional qk-norm and RoPE.

    Separate projections keep names identical to HF Llama/Qwen (q_proj, ...) so checkpoints and LoRA targets
    map one-to-one. Grouped-query attention (Ainslie et al. 2023): H query heads share Hkv key/value heads,
    each kv head serving H/Hkv consecutive query heads.
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        qkv_bias = cfg.qkv_bias
        self.q_proj = nn.Linear(cfg.d_model, self.n_head * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, cfg.d_model, bias=cfg.bias)
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's hd channels, before RoPE
            self.q_norm = RMSNorm(self.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, rope: tuple | None, cache=None, mask: torch.Tensor | None = None,
                is_causal: bool = True) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim)  # (B, T, H, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, Hkv, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, Hkv, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|Hkv, T, hd)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, L, hd): all keys so far, this call's included
        y = sdpa(q, k, v, mask, is_causal, self.dropout if self.training else 0.0)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H*hd)
        return self.o_proj(y)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
         dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + mask) v (Vaswani et al. 2017, eq. 1) through the fused SDPA kernel.
    q: (B, H, T, hd), k/v: (B, Hkv, L, hd), mask: bool (T, L) or (B, 1, T, L), True = may attend."""
    n_rep = q.shape[1] // k.shape[1]
    causal = is_causal and mask is None and q.shape[2] > 1
    if n_rep == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
    if _SDPA_HAS_GQA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                              enable_gqa=True)
    # older torch: repeat each kv head for its n_rep query heads, (B, Hkv, L, hd) -> (B, H, L, hd)
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)


class CrossAttention(Attention):
    """Encoder-decoder attention (Vaswani et al. 2017, sec. 3.2.3): queries come from the decoder, keys and
    values from the encoder output ("memory"). Same projections and the same `sdpa` as self-attention; no
    RoPE and no causality (every target position may look at every real source token).

    `memory_kv(memory)` projects the memory once: at decode time the encoder output does not change, so its
    keys/values (B, Hkv, S, hd) are computed once per source sentence and reused at every decoder step.
    """

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, S, _ = memory.shape
        k = self.k_proj(memory).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, S, hd)
        v = self.v_proj(memory).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, S, hd)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) decoder states; kv from `memory_kv`; mask (B, 1, 1, S) True = real source token."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        y = sdpa(q, kv[0], kv[1], mask, False, self.dropout if self.training else 0.0)  # (B, H, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


def document_mask(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention mask and positions for rows that pack several documents (sequence packing).

    segments (B, T): a document id per token, constant over each document's contiguous run of tokens
    (padding is a run of its own). Token i may attend to token j iff j <= i and both belong to the same
    document, so the mask is block-diagonal causal; positions restart at 0 where each run starts, so RoPE /
    learned positions see every document exactly as if it were alone in its row.
    Returns (mask bool (B, 1, T, T), True = may attend; positions int64 (B, T)).
    """
    B, T = segments.shape
    same = segments.unsqueeze(-1) == segments.unsqueeze(-2)  # (B, T, T): query i, key j in one document
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    idx = torch.arange(T, device=segments.device).expand(B, T)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]  # first token of each run
    run_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(-1).values  # (B, T): where my run began
    return (same & causal).unsqueeze(1), idx - run_start


# ----------------------------------------------------------------------------------------------------------
# MLPs


class GeluMLP(nn.Module):
    """x -> proj(gelu(fc(x))): GPT-2 (tanh-approximate GELU, Hendrycks & Gimpel 2016 eq. 2) or GPT-NeoX
    (exact erf GELU); or x -> proj(relu(fc(x))) (Vaswani et al. 2017, eq. 2; the encoder-decoder)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.approximate = "tanh" if cfg.mlp == "gelu" else "none"
        self.relu = cfg.mlp == "relu"  # the original Transformer's FFN: max(0, x W1 + b1) W2 + b2 (eq. 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (B, T, F)
        return self.proj(F.relu(h) if self.relu else F.gelu(h, approximate=self.approximate))  # (B, T, D)


class SwiGLU(nn.Module):
    """x -> down(silu(gate(x)) * up(x)) (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6 FFN_SwiGLU)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, F) -> (B, T, D)


def make_mlp(cfg: ModelConfig) -> nn.Module:
    return SwiGLU(cfg) if cfg.mlp == "swiglu" else GeluMLP(cfg)


class Block(nn.Module):
    """One pre-norm decoder block.

    sequential (GPT-2, Llama): x = x + attn(norm1(x)); x = x + mlp(norm2(x))
    parallel   (GPT-NeoX, GPT-J): x = x + attn(norm1(x)) + mlp(norm2(x))
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.norm1 = make_norm(cfg, cfg.d_model)
        self.attn = Attention(cfg, layer_idx)
        self.norm2 = make_norm(cfg, cfg.d_model)
        self.mlp = make_mlp(cfg)
        self.parallel_residual = cfg.parallel_residual
        self.dropout = cfg.dropout

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.dropout, self.training)

    def forward(self, x: torch.Tensor, rope: tuple | None, cache=None, mask: torch.Tensor | None = None,
                is_causal: bool = True) -> torch.Tensor:
        a = self._drop(self.attn(self.norm1(x), rope, cache, mask, is_causal))  # (B, T, D)
        if self.parallel_residual:
            return x + a + self._drop(self.mlp(self.norm2(x)))
        x = x + a
        return x + self._drop(self.mlp(self.norm2(x)))
