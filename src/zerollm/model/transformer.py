"""`Transformer`: the one decoder-only language model; GPT-2, Llama, Qwen2/3 and GPT-NeoX are config data.

Data flow of `forward(idx)`:

    idx (B, T) token ids
      -> tok_emb (+ pos_emb if position == "learned")       (B, T, D)
      -> blocks[0..n_layer-1]: pre-norm attention + MLP      (B, T, D)   (RoPE applied inside attention)
      -> norm_f                                              (B, T, D)   <- return_hidden=True stops here
      -> lm_head (or tok_emb.weight when tied)               (B, T, V)   float32 logits

Module names (stable: checkpoints, LoRA targets and the HF mappings rely on them):
    tok_emb, pos_emb, blocks.{i}.norm1, blocks.{i}.attn.{q_proj,k_proj,v_proj,o_proj[,q_norm,k_norm]},
    blocks.{i}.norm2, blocks.{i}.mlp.{fc,proj} | {gate_proj,up_proj,down_proj}, norm_f, lm_head.
With tied embeddings there is no `lm_head` module: the output projection reads `tok_emb.weight`, so the
state dict holds each tensor once (as HF checkpoints omit `lm_head.weight` when tied).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .dropout import dropout
from .generation import GenerationMixin
from .kv_cache import KVCache
from .layers import Block, RMSNorm, RotaryEmbedding, document_mask, make_norm


class Transformer(GenerationMixin, nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.position == "learned" else None
        self.rope = RotaryEmbedding(cfg) if cfg.position == "rope" else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = make_norm(cfg, cfg.d_model)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.init_weights()

    # ------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2 initialisation (Radford et al. 2019, sec. 2.3): every Linear/Embedding ~ N(0, init_std),
        biases 0, norms 1; the projections that write into the residual stream (attn.o_proj, mlp.proj,
        mlp.down_proj) use init_std / sqrt(2 * n_layer) so the stream's variance does not grow with depth."""
        std = self.cfg.init_std
        residual_std = std / math.sqrt(2 * self.cfg.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                is_residual = name.endswith(("attn.o_proj", "mlp.proj", "mlp.down_proj"))
                nn.init.normal_(module.weight, mean=0.0, std=residual_std if is_residual else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------------------------------------------

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                return_hidden: bool = False, segments: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) int64 -> logits (B, T, V) float32, or hidden states (B, T, D) after the final norm.

        cache: a `KVCache`; the T new tokens go to slots [cache.pos, cache.pos+T) and the cache advances.
        positions: absolute positions (T,) or (B, T) of the new tokens (default cache.pos + arange(T));
            pass them for left-padded batches (see kv_cache.py).
        segments: document ids (B, T) of packed rows (training only): attention stays inside each document
            and positions restart at 0 per document (layers.document_mask). None = one causal sequence per
            row, through SDPA's fused causal path with no mask tensor.
        """
        B, T = idx.shape
        doc_mask = None
        if segments is not None:
            if cache is not None or positions is not None:
                raise ValueError("segments (packed documents) cannot be combined with a KV cache or positions")
            doc_mask, positions = document_mask(segments)
        start = cache.pos if cache is not None else 0
        limit = cache.max_len if cache is not None else self.cfg.max_seq_len
        if start + T > limit:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context window ({limit})")
        x, rope = self.embed(idx, start, positions)  # (B, T, D), RoPE cos/sin
        mask = cache.attn_mask(T) if cache is not None else doc_mask  # None -> plain causal (or T == 1)
        for block in self.blocks:
            x = block(x, rope, cache, mask)  # (B, T, D)
        if cache is not None:
            cache.advance(T)
        x = self.norm_f(x)
        return x if return_hidden else self.logits(x)

    def embed(self, idx: torch.Tensor, start: int = 0, positions: torch.Tensor | None = None):
        """Token (+ learned position) embeddings (B, T, D) of tokens at positions start.. (or `positions`), and
        RoPE's (cos, sin) for those positions (None without RoPE)."""
        T = idx.shape[1]
        x = self.tok_emb(idx)  # (B, T, D)
        if self.pos_emb is not None:
            pos = positions if positions is not None else torch.arange(start, start + T, device=idx.device)
            x = x + self.pos_emb(pos)  # (B, T, D) + (T, D) or (B, T, D)
        rope = self.rope(start, T, positions) if self.rope is not None else None  # cos, sin: (T, rot)
        x = dropout(x, self.cfg.dropout, self.training)
        return x, rope

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output projection of final hidden states (..., D) -> float32 logits (..., V). Generation calls this
        on the last position only, so the (V x D) matmul is not spent on prompt tokens."""
        if self.lm_head is None:  # tied: the embedding table is the projection
            return F.linear(hidden, self.tok_emb.weight).float()
        return self.lm_head(hidden).float()  # a Linear, or a QuantLinear (model/quant.py)

    # ------------------------------------------------------------------------------------------------------

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of distinct parameters. non_embedding=True leaves out the token and position embedding
        tables (Kaplan et al. 2020's N); an untied lm_head is a matmul, so it is counted."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token at context `seq_len`: 6*N + 12*L*H*hd*T.

        N counts every weight that takes part in a matmul (the non-embedding parameters plus the V x D output
        projection, tied or not); 6 = 2 (multiply-add) * 3 (forward + twice as much backward). The second
        term is attention's q.k and attn.v products, 2 * 2 * T * H * hd per layer forward, x3 for backward
        (PaLM, Chowdhery et al. 2022, appendix B; as in nanoGPT's estimate_mfu).
        """
        cfg = self.cfg
        T = cfg.max_seq_len if seq_len is None else seq_len
        n_matmul = self.num_params(non_embedding=True) + (cfg.vocab_size * cfg.d_model if self.lm_head is None
                                                           else 0)
        return 6 * n_matmul + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * T

    def describe(self) -> str:
        """One line: size and every architectural switch."""
        c = self.cfg
        kv = f"{c.n_kv_head} kv" if c.n_kv_head != c.n_head else "MHA"
        pos = "learned pos" if c.position == "learned" else (
            f"RoPE θ={c.rope_theta:g}" + (f" {c.rotary_pct:g} partial" if c.rotary_pct < 1 else "")
            + (f" {c.rope_scaling.get('rope_type', c.rope_scaling.get('type'))}-scaled" if c.rope_scaling else ""))
        extras = [s for s, on in (("qk-norm", c.qk_norm), ("parallel", c.parallel_residual),
                                  ("bias", c.bias), ("qkv-bias", c.qkv_bias and not c.bias),
                                  ("tied", c.tie_embeddings)) if on]
        return (f"Transformer {self.num_params() / 1e6:.2f}M params ({self.num_params(True) / 1e6:.2f}M non-emb): "
                f"{c.n_layer} layers, d_model {c.d_model}, {c.n_head} heads ({kv}, head_dim {c.head_dim}), "
                f"{c.mlp} d_ff {c.d_ff}, {c.norm}, {pos}, ctx {c.max_seq_len}, vocab {c.vocab_size}"
                + (", " + ", ".join(extras) if extras else ""))

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device
