"""GGUF export (llama.cpp, Ollama, LM Studio) through the `gguf` package, with tokenizer metadata.

Architectures: zerollm configs that are Llama (`llama`), Qwen2 (`qwen2`, qkv biases), Qwen3 (`qwen3`,
q/k norm) or GPT-2 (`gpt2`). Tensor names follow `gguf.constants.TENSOR_NAMES`:

    tok_emb                  token_embd           blocks.{i}.norm1 / norm2   blk.{i}.attn_norm / ffn_norm
    pos_emb (gpt2)           position_embd        attn.q_proj / k_proj / v_proj  attn_q / attn_k / attn_v
    norm_f                   output_norm          attn.o_proj                blk.{i}.attn_output
    lm_head (or a copy of    output               attn.q_norm / k_norm       attn_q_norm / attn_k_norm
     tok_emb: gpt2, or none when tied otherwise)  mlp.gate/up/down_proj      ffn_gate / ffn_up / ffn_down
                                                  gpt2: q|k|v concatenated -> attn_qkv, mlp.fc / proj -> ffn_up / ffn_down

Arrays are written row-major as PyTorch holds them ([out, in]); GGUF lists dimensions reversed, so a
[V, D] embedding reads back as shape (D, V). llama.cpp's `llama` architecture rotates interleaved RoPE pairs,
so q/k rows (and biases) get `half_to_interleaved` (llama.cpp's `LlamaModel.permute`); qwen2/qwen3 use
NeoX-style RoPE and need no permutation. Llama-3 RoPE scaling is written as the `rope_freqs` tensor of
per-frequency divisors, as llama.cpp's converter does.

Tokenizer: our byte-level BPE as `tokenizer.ggml.model = "gpt2"` (tokens in GPT-2's byte map, merges
derived from the ranks, specials as CONTROL tokens, `pre` = "gpt-2" for GPT-2's regex, "llama-bpe" for the
cl100k-style default, else "default"); a SentencePiece tokenizer as `"llama"` (pieces, scores, types).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zerollm.artifacts import atomic_path
from zerollm.config import ModelConfig
from zerollm.interop.hf_arch import hf_model_type
from zerollm.interop.hf_tokenizer import _chars, derive_merges
from zerollm.interop.llama2c import half_to_interleaved
from zerollm.interop.weights import InteropError
from zerollm.tokenizer.pretokenize import GPT2_PATTERN, GPT4_PATTERN


def gguf_arch(cfg: ModelConfig) -> str:
    mt = hf_model_type(cfg)
    if mt == "gpt_neox":
        raise InteropError("GGUF export supports llama, qwen2, qwen3 and gpt2 configs, not GPT-NeoX")
    if mt == "llama" and cfg.head_dim * cfg.n_head != cfg.d_model and cfg.rope_scaling:
        raise InteropError("GGUF llama export: head_dim != d_model/n_head together with RoPE scaling")
    return mt


def _tensors(model, arch: str, f16: bool):
    """(gguf name, numpy array) for every tensor, in file order."""
    cfg: ModelConfig = model.cfg
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}

    def arr(t: torch.Tensor) -> np.ndarray:
        t = t.contiguous()
        return t.half().numpy() if f16 and t.dim() == 2 else t.numpy()

    out = [("token_embd.weight", arr(sd["tok_emb.weight"]))]
    if arch == "gpt2":
        out.append(("position_embd.weight", arr(sd["pos_emb.weight"])))
    for i in range(cfg.n_layer):
        b, g = f"blocks.{i}.", f"blk.{i}."
        for suffix in ("weight", "bias"):
            if b + "norm1." + suffix in sd:
                out.append((g + "attn_norm." + suffix, arr(sd[b + "norm1." + suffix])))
        if arch == "gpt2":
            for suffix in ("weight", "bias"):
                qkv = torch.cat([sd[b + f"attn.{p}_proj.{suffix}"] for p in "qkv"], 0)
                out.append((g + "attn_qkv." + suffix, arr(qkv)))
        else:
            for p, heads in (("q", cfg.n_head), ("k", cfg.n_kv_head), ("v", 0)):
                for suffix in ("weight", "bias"):
                    t = sd.get(b + f"attn.{p}_proj.{suffix}")
                    if t is None:
                        continue
                    if arch == "llama" and heads:  # interleaved RoPE pairs for llama.cpp's llama arch
                        t = half_to_interleaved(t.reshape(t.shape[0], -1), heads).reshape(t.shape)
                    out.append((g + f"attn_{p}.{suffix}", arr(t)))
            if cfg.qk_norm:
                out += [(g + "attn_q_norm.weight", arr(sd[b + "attn.q_norm.weight"])),
                        (g + "attn_k_norm.weight", arr(sd[b + "attn.k_norm.weight"]))]
        for suffix in ("weight", "bias"):
            if b + "attn.o_proj." + suffix in sd:
                out.append((g + "attn_output." + suffix, arr(sd[b + "attn.o_proj." + suffix])))
            if b + "norm2." + suffix in sd:
                out.append((g + "ffn_norm." + suffix, arr(sd[b + "norm2." + suffix])))
        mlp = (("fc", "ffn_up"), ("proj", "ffn_down")) if arch == "gpt2" else \
            (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down"))
        for ours, theirs in mlp:
            for suffix in ("weight", "bias"):
                if b + f"mlp.{ours}.{suffix}" in sd:
                    out.append((g + f"{theirs}.{suffix}", arr(sd[b + f"mlp.{ours}.{suffix}"])))
    out += [("output_norm." + s, arr(sd["norm_f." + s])) for s in ("weight", "bias") if "norm_f." + s in sd]
    if "lm_head.weight" in sd:
        out.append(("output.weight", arr(sd["lm_head.weight"])))
    elif arch == "gpt2":  # llama.cpp's converter stores GPT-2's tied head as its own copy
        out.append(("output.weight", arr(sd["tok_emb.weight"])))
    if arch == "llama" and cfg.rope_scaling and cfg.rope_scaling.get("rope_type") == "llama3":
        from zerollm.model.layers import rope_inv_freq

        base, scaled = rope_inv_freq(cfg.head_dim, cfg.rope_theta), rope_inv_freq(cfg.head_dim, cfg.rope_theta,
                                                                                  cfg.rope_scaling)
        out.append(("rope_freqs.weight", (base / scaled).float().numpy()))
    return out


def gguf_pre_name(pattern: str) -> str:
    """The llama.cpp pre-tokenizer name for a regex (src/llama-vocab.cpp knows these names)."""
    return {GPT2_PATTERN: "gpt-2", GPT4_PATTERN: "llama-bpe"}.get(pattern, "default")


def _add_tokenizer(w, tok, vocab_size: int, chat_template: str | None) -> None:
    import gguf

    if tok.vocab_size > vocab_size:
        raise InteropError(f"tokenizer has {tok.vocab_size} tokens but the model only {vocab_size}")
    if type(tok).__name__ == "BPETokenizer":
        tokens = [_chars(tok.token_bytes(i)) if i < len(tok.mergeable_ranks) else tok.token_bytes(i).decode("utf-8")
                  for i in range(tok.vocab_size)]
        types = [gguf.TokenType.NORMAL if i < len(tok.mergeable_ranks) else gguf.TokenType.CONTROL
                 for i in range(tok.vocab_size)]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(gguf_pre_name(tok.pattern))
        names = {t: _chars(t) for t in tok.mergeable_ranks}
        merges = [f"{names[a]} {names[b]}" for a, b in derive_merges(tok)]
        scores = None
        ids = {r: tok.special_tokens[t] for r, t in tok.roles.items()}
    elif type(tok).__name__ == "SentencePieceTokenizer":
        table = tok.table
        tokens, scores, types = list(table.pieces), list(table.scores), list(table.types)
        tokens += list(tok.special_tokens)
        scores += [0.0] * len(tok.special_tokens)
        types += [gguf.TokenType.CONTROL] * len(tok.special_tokens)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        merges = None
        ids = {"bos": tok.model.trainer("bos_id"), "eos": tok.model.trainer("eos_id"), "unk": table.unk_id}
        ids = {r: i for r, i in ids.items() if i is not None and i >= 0}
    else:
        raise InteropError(f"GGUF tokenizer metadata: {type(tok).__name__} is not supported (byte-level BPE and "
                           f"SentencePiece are)")
    for i in range(len(tokens), vocab_size):  # the model's embedding is padded beyond the tokenizer
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
        if scores is not None:
            scores.append(0.0)
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    for role, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("pad", w.add_pad_token_id),
                      ("unk", w.add_unk_token_id)):
        if ids.get(role) is not None:
            add(int(ids[role]))
    w.add_add_bos_token(type(tok).__name__ == "SentencePieceTokenizer")
    if chat_template:
        w.add_chat_template(chat_template)


def export_gguf(model, tok, out: str | Path, chat_template: str | None = None, dtype: str = "f32",
                name: str = "zerollm") -> Path:
    """Write `model` (+ tokenizer metadata) as a GGUF file, atomically. dtype: "f32" or "f16" (2-D weights)."""
    import gguf

    if dtype not in ("f32", "f16"):
        raise InteropError(f"GGUF dtype {dtype!r}: use f32 or f16")
    cfg: ModelConfig = model.cfg
    arch = gguf_arch(cfg)
    tensors = _tensors(model, arch, dtype == "f16")
    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_name(name)
        w.add_context_length(cfg.max_seq_len)
        w.add_embedding_length(cfg.d_model)
        w.add_block_count(cfg.n_layer)
        w.add_feed_forward_length(cfg.d_ff)
        w.add_head_count(cfg.n_head)
        w.add_vocab_size(cfg.vocab_size)
        if arch == "gpt2":
            w.add_layer_norm_eps(cfg.norm_eps)
        else:
            w.add_head_count_kv(cfg.n_kv_head)
            w.add_layer_norm_rms_eps(cfg.norm_eps)
            w.add_rope_freq_base(cfg.rope_theta)
            w.add_rope_dimension_count(cfg.head_dim)
            if cfg.head_dim * cfg.n_head != cfg.d_model:
                w.add_key_length(cfg.head_dim)
                w.add_value_length(cfg.head_dim)
            kind = (cfg.rope_scaling or {}).get("rope_type")
            if kind == "linear":
                w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(float(cfg.rope_scaling["factor"]))
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
        if tok is not None:
            _add_tokenizer(w, tok, cfg.vocab_size, chat_template)
        for tname, arr in tensors:
            w.add_tensor(tname, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return Path(out)


__all__ = ["export_gguf", "gguf_arch", "gguf_pre_name"]
