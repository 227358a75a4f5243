"""`Seq2Seq`: the encoder-decoder Transformer of Vaswani et al. 2017 ("Attention Is All You Need"), built
from the same attention, MLP and norm modules as the decoder-only model (model/layers.py).

    src (B, S) ──tok_emb·√D + PE──▶ encoder layers (self-attn, padding mask; FFN) ──▶ memory (B, S, D)
    tgt (B, T) ──tok_emb·√D + PE──▶ decoder layers (causal self-attn; cross-attn over memory; FFN)
                                     ──▶ output projection (tied to tok_emb with a joint vocab) ──▶ (B, T, V)

Variants are data (`Seq2SeqConfig`):
    position   sinusoidal (sec. 3.5) | learned | rope (self-attention only; cross-attention has no positions)
    norm_first False: post-LN, x = LN(x + Sublayer(x)) (the paper, sec. 3.1; Marian) | True: pre-LN,
               x = x + Sublayer(LN(x)) with a final LN on each stack (Xiong et al. 2020)
    share_embeddings  one table for source, target and (tie_output) the output projection (sec. 3.4)
    dropout    on embeddings + positions and on each sub-layer output before the residual add (sec. 5.4)
Label smoothing is part of the objective (objectives/seq2seq.py), not of the model.

Decoding (engine/seq2seq.py): `encode` once, `memory_kv` projects the encoder output to every decoder
layer's cross-attention keys/values once per source sentence, and each `decode` step runs one new target
token through the decoder with the self-attention KV cache (model/kv_cache.py).

Module names follow the decoder-only model's where they are the same thing (tok_emb, q_proj, o_proj, fc,
proj); interop/marian.py maps them to Hugging Face MarianMTModel names.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..objectives.fused_ce import linear_label_smoothed_ce
from .dropout import dropout
from .kv_cache import KVCache
from .layers import Attention, CrossAttention, RotaryEmbedding, make_mlp, make_norm


@dataclass
class Seq2SeqConfig:
    vocab_size: int = 8000  # target vocabulary (the joint one when share_embeddings)
    src_vocab_size: int | None = None  # None = same table as the target (joint vocabulary)
    d_model: int = 512
    n_head: int = 8
    n_enc_layer: int = 6
    n_dec_layer: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    position: str = "sinusoidal"  # sinusoidal | learned | rope
    norm_first: bool = False  # False: post-LN (the paper); True: pre-LN
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    mlp: str = "relu"  # relu (the paper) | gelu | gelu_exact | swiglu
    scale_embedding: bool = True  # multiply embeddings by sqrt(d_model) (sec. 3.4)
    share_embeddings: bool = True  # needs src_vocab_size None
    tie_output: bool = True  # output projection = target embedding (sec. 3.4)
    max_seq_len: int = 256  # longest source or target sequence (positions table, caches)
    pad_id: int = 0
    bos_id: int = 1  # the decoder's start token
    eos_id: int = 2
    rope_theta: float = 10000.0
    arch: str = "seq2seq"  # what config.json says, so loading.load can tell this from a decoder-only model

    def __post_init__(self) -> None:
        for name, allowed in (("position", ("sinusoidal", "learned", "rope")), ("norm", ("layernorm", "rmsnorm")),
                              ("mlp", ("relu", "gelu", "gelu_exact", "swiglu"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Seq2SeqConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.share_embeddings and self.src_vocab_size not in (None, self.vocab_size):
            raise ValueError("share_embeddings needs a joint vocabulary (src_vocab_size None)")

    @property
    def n_layer(self) -> int:  # what reports print as depth: encoder + decoder layers
        return self.n_enc_layer + self.n_dec_layer

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def layer_config(self) -> ModelConfig:
        """The ModelConfig the shared layer modules (layers.py) read: widths, norm, MLP, biases, dropout."""
        return ModelConfig(vocab_size=self.vocab_size, n_layer=max(self.n_enc_layer, self.n_dec_layer),
                           n_head=self.n_head, d_model=self.d_model, d_ff=self.d_ff, max_seq_len=self.max_seq_len,
                           norm=self.norm, norm_eps=self.norm_eps, mlp=self.mlp,
                           position="rope" if self.position == "rope" else "learned", rope_theta=self.rope_theta,
                           bias=True, dropout=self.dropout, tie_embeddings=self.tie_output)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Seq2SeqConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Seq2SeqConfig fields: {sorted(unknown)}")
        return cls(**d)


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (sec. 3.5), with the
    sin channels in the first half and the cos channels in the second (tensor2tensor's, fairseq's and
    Marian's layout: a fixed permutation of the paper's interleaving, the same to a model trained on it).
    Computed in float64 as Marian does, then cast: (n_pos, dim)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    inv = 10000.0 ** (-2.0 * torch.arange((dim + 1) // 2, dtype=torch.float64) / dim)  # (ceil(d/2),)
    sin = torch.sin(pos * inv)
    cos = torch.cos(pos * inv[: dim // 2])
    return torch.cat([sin, cos], dim=-1).float()


def _residual(x, sublayer, norm, norm_first: bool, p: float, training: bool):
    """Post-LN: LN(x + Dropout(Sublayer(x))) (sec. 3.1, 5.4). Pre-LN: x + Dropout(Sublayer(LN(x)))."""
    if norm_first:
        return x + dropout(sublayer(norm(x)), p, training)
    return norm(x + dropout(sublayer(x), p, training))


class EncoderLayer(nn.Module):
    def __init__(self, lc: ModelConfig, i: int, norm_first: bool):
        super().__init__()
        self.self_attn, self.norm1 = Attention(lc, i), make_norm(lc, lc.d_model)
        self.mlp, self.norm2 = make_mlp(lc), make_norm(lc, lc.d_model)
        self.norm_first, self.p = norm_first, lc.dropout

    def forward(self, x, rope, mask):
        x = _residual(x, lambda h: self.self_attn(h, rope, None, mask, is_causal=False), self.norm1,
                      self.norm_first, self.p, self.training)
        return _residual(x, self.mlp, self.norm2, self.norm_first, self.p, self.training)


class DecoderLayer(nn.Module):
    def __init__(self, lc: ModelConfig, i: int, norm_first: bool):
        super().__init__()
        self.self_attn, self.norm1 = Attention(lc, i), make_norm(lc, lc.d_model)
        self.cross_attn, self.norm2 = CrossAttention(lc, i), make_norm(lc, lc.d_model)
        self.mlp, self.norm3 = make_mlp(lc), make_norm(lc, lc.d_model)
        self.norm_first, self.p = norm_first, lc.dropout

    def forward(self, x, rope, cache, self_mask, kv, src_mask):
        x = _residual(x, lambda h: self.self_attn(h, rope, cache, self_mask, is_causal=True), self.norm1,
                      self.norm_first, self.p, self.training)
        x = _residual(x, lambda h: self.cross_attn(h, kv, src_mask), self.norm2, self.norm_first, self.p,
                      self.training)
        return _residual(x, self.mlp, self.norm3, self.norm_first, self.p, self.training)


class Seq2Seq(nn.Module):
    kind = "seq2seq"

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        lc = cfg.layer_config()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)  # target (and joint) table
        self.src_emb = None if cfg.share_embeddings else nn.Embedding(cfg.src_vocab_size or cfg.vocab_size,
                                                                      cfg.d_model)
        if cfg.position == "learned":
            self.enc_pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
            self.dec_pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        elif cfg.position == "sinusoidal":  # a function of the config: not saved with the weights
            self.register_buffer("pe", sinusoidal_table(cfg.max_seq_len, cfg.d_model), persistent=False)
        self.rope = RotaryEmbedding(lc) if cfg.position == "rope" else None
        self.encoder = nn.ModuleList(EncoderLayer(lc, i, cfg.norm_first) for i in range(cfg.n_enc_layer))
        self.decoder = nn.ModuleList(DecoderLayer(lc, i, cfg.norm_first) for i in range(cfg.n_dec_layer))
        self.enc_norm = make_norm(lc, cfg.d_model) if cfg.norm_first else None  # pre-LN: final norms
        self.dec_norm = make_norm(lc, cfg.d_model) if cfg.norm_first else None
        self.lm_head = None if cfg.tie_output else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # Marian's final_logits_bias (zeros unless an imported checkpoint has one)
        self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Xavier-uniform matrices, zero biases (as tensor2tensor / fairseq), the attention's query, key and
        value projections with gain 1/sqrt(2) (fairseq's "scaled initialization"; the same bound as
        xavier on torch's packed (3D, D) in_proj; bench/bench_translate_init.py: dev BLEU 17.9 against 13.5
        after 384 equal steps); embeddings N(0, D^-1/2) so that after the sqrt(D) scale the token embeddings have unit
        variance, like the positions."""
        qkv = {id(lin) for a in self.modules() if isinstance(a, Attention) for lin in (a.q_proj, a.k_proj, a.v_proj)}
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=2 ** -0.5 if id(m) in qkv else 1.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, self.cfg.d_model ** -0.5)

    # ------------------------------------------------------------------------------------------------------

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int, learned: nn.Module | None):
        T = ids.shape[1]
        x = table(ids) * (math.sqrt(self.cfg.d_model) if self.cfg.scale_embedding else 1.0)  # (B, T, D)
        if self.cfg.position == "sinusoidal":
            x = x + self.pe[start:start + T]
        elif learned is not None:
            x = x + learned(torch.arange(start, start + T, device=ids.device))
        rope = self.rope(start, T) if self.rope is not None else None
        return dropout(x, self.cfg.dropout, self.training), rope

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S), right-padded with pad_id -> (memory (B, S, D), src_mask (B, 1, 1, S) True = real)."""
        if src.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"source of {src.shape[1]} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        src_mask = (src != self.cfg.pad_id)[:, None, None, :]
        x, rope = self._embed(self.src_emb or self.tok_emb, src, 0, getattr(self, "enc_pos", None))
        for layer in self.encoder:
            x = layer(x, rope, src_mask)
        return (self.enc_norm(x) if self.enc_norm is not None else x), src_mask

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder layer's cross-attention keys/values of the encoder output, computed once."""
        return [layer.cross_attn.memory_kv(memory) for layer in self.decoder]

    def decode(self, tgt: torch.Tensor, kv: list, src_mask: torch.Tensor, cache: KVCache | None = None,
               return_hidden: bool = False) -> torch.Tensor:
        """tgt (B, T) decoder input (bos first) -> logits (B, T, V). With `cache`, tgt holds the new tokens only
        (at positions cache.pos..), and the cache advances."""
        start = cache.pos if cache is not None else 0
        if start + tgt.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"target of {start + tgt.shape[1]} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        x, rope = self._embed(self.tok_emb, tgt, start, getattr(self, "dec_pos", None))
        self_mask = cache.attn_mask(tgt.shape[1]) if cache is not None else None  # None: plain causal
        for layer, layer_kv in zip(self.decoder, kv):
            x = layer(x, rope, cache, self_mask, layer_kv, src_mask)
        if cache is not None:
            cache.advance(tgt.shape[1])
        if self.dec_norm is not None:
            x = self.dec_norm(x)
        return x if return_hidden else self.logits(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        return (F.linear(hidden, w) + self.final_logits_bias).float()

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, targets: torch.Tensor | None = None,
                label_smoothing: float = 0.0):
        """Teacher forcing: src (B, S), tgt (B, T) = [bos, y_1, ..., y_{T-1}] -> logits (B, T, V).
        With `targets` (B, T) = [y_1, ..., y_T, eos] (-100 on padding), returns (label-smoothed loss, plain
        NLL) instead, as nanoGPT's model(idx, targets) does: only the real target positions are projected
        to the vocabulary, chunk by chunk, fused with the loss (objectives/fused_ce.py); inside forward, so
        DDP and FSDP see the output projection's use of the (tied) weights."""
        memory, src_mask = self.encode(src)
        hidden = self.decode(tgt, self.memory_kv(memory), src_mask, return_hidden=True)
        if targets is None:
            return self.logits(hidden)
        keep = targets != -100
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        bias = self.final_logits_bias if bool(self.final_logits_bias.any()) else None
        return linear_label_smoothed_ce(hidden[keep], w, bias, targets[keep], label_smoothing)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.tok_emb.weight
        return KVCache(self.cfg.n_dec_layer, batch_size, self.cfg.n_head, min(max_len, self.cfg.max_seq_len),
                       self.cfg.head_dim, dtype=p.dtype, device=p.device)

    # ------------------------------------------------------------------------------------------------------

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(m.weight.numel() for m in (self.tok_emb, self.src_emb, getattr(self, "enc_pos", None),
                                                getattr(self, "dec_pos", None)) if m is not None)
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per real (source or target) token, ~6 x the weights it passes through (Kaplan et al.
        2020): a source token the encoder's, a target token the decoder's and the output projection's (V x D).
        Averaged over as many source as target tokens: 6 (N_enc + N_dec + V D) / 2. Attention scores are left
        out (sentences are short)."""
        return 3 * (self.num_params(non_embedding=True) + self.cfg.vocab_size * self.cfg.d_model)

    def describe(self) -> str:
        c = self.cfg
        return (f"Seq2Seq {self.num_params() / 1e6:.2f}M params: {c.n_enc_layer}+{c.n_dec_layer} layers, "
                f"d_model {c.d_model}, {c.n_head} heads, {c.mlp} d_ff {c.d_ff}, "
                f"{'pre' if c.norm_first else 'post'}-LN {c.norm}, {c.position} positions, "
                + (f"vocab {c.vocab_size}" if c.src_vocab_size is None else
                   f"source vocab {c.src_vocab_size}, target vocab {c.vocab_size}")
                + (", shared embeddings" if c.share_embeddings else "") + (", tied output" if c.tie_output else "")
                + f", dropout {c.dropout:g}")

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device


@torch.no_grad()
def cross_attention(model: Seq2Seq, src: list[int], tgt_in: list[int], layer: int = -1) -> torch.Tensor:
    """Attention weights softmax(q k^T / sqrt(hd)) of decoder layer `layer`'s cross-attention, averaged over
    heads, for one sentence under teacher forcing: (len(tgt_in), len(src)). For pictures, not for decoding."""
    was = model.training
    model.eval()
    attn = model.decoder[layer].cross_attn
    seen = {}
    hook = attn.register_forward_hook(lambda mod, args, out: seen.update(args=args))  # returns None: output kept
    try:
        device = model.device
        model(torch.tensor([src], device=device), torch.tensor([tgt_in], device=device))
    finally:
        hook.remove()
        model.train(was)
    h, (k, _), _ = seen["args"]
    q = attn.q_proj(h).view(1, h.shape[1], attn.n_head, attn.head_dim).transpose(1, 2)  # (1, H, T, hd)
    w = (q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)).softmax(-1)  # (1, H, T, S)
    return w[0].mean(0).cpu()


def is_seq2seq_config(d: dict) -> bool:
    return d.get("arch") == "seq2seq"


__all__ = ["Seq2Seq", "Seq2SeqConfig", "cross_attention", "is_seq2seq_config", "sinusoidal_table"]
