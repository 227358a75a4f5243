"""Hugging Face architectures as data: config.json <-> `ModelConfig`, and state-dict name/layout rules.

Supported `model_type`s: gpt2, llama, mistral, qwen2, qwen3, gpt_neox. Each maps to one `ModelConfig`
(the variant switches do the work) plus a list of `Rule`s. A rule ties a group of our tensors to a group
of HF tensors and converts in both directions, so import and export are the same table read both ways:

    gpt2      transformer.wte / wpe / ln_f, h.{i}.ln_1 / ln_2      tok_emb / pos_emb / norm_f, blocks.{i}.norm1 / norm2
              h.{i}.attn.c_attn   [D, 3D] Conv1D (y = x W + b)    attn.q_proj | k_proj | v_proj  (transpose, split)
              h.{i}.attn.c_proj, mlp.c_fc, mlp.c_proj  (Conv1D)   attn.o_proj, mlp.fc, mlp.proj  (transpose)
    llama     model.embed_tokens / norm, lm_head                  tok_emb / norm_f, lm_head
    (mistral, model.layers.{i}.input_layernorm / post_attention_  blocks.{i}.norm1 / norm2
     qwen2,   self_attn.{q,k,v,o}_proj (+ q/k bias: qwen2)        attn.{q,k,v,o}_proj            (same layout:
     qwen3)   self_attn.{q,k}_norm (qwen3)                        attn.{q,k}_norm                 rotate_half RoPE
              mlp.{gate,up,down}_proj                             mlp.{gate,up,down}_proj         on both sides)
    gpt_neox  gpt_neox.embed_in / final_layer_norm, embed_out     tok_emb / norm_f, lm_head
              layers.{i}.attention.query_key_value [3D, D]        attn.q_proj | k_proj | v_proj  (de-interleave:
                  rows are per head [q_h; k_h; v_h], hd each)         view(H, 3, hd, D)[:, j])
              attention.dense, mlp.dense_h_to_4h / 4h_to_h        attn.o_proj, mlp.fc / mlp.proj

Config keys of transformers 4.x (`rope_theta`, `rope_scaling`, `rotary_pct`, `torch_dtype`) and 5.x
(`rope_parameters`, `dtype`) are both read, and both are written on export.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from zerollm.config import ModelConfig
from zerollm.interop.weights import InteropError

Tensors = list[torch.Tensor]
SUPPORTED = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox")
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}
# buffers some checkpoints carry that are not weights (causal masks, cached RoPE frequencies)
IGNORED = re.compile(r"(\.attn\.(masked_)?bias|\.attention\.(masked_)?bias|rotary_emb\.inv_freq)$")


@dataclass
class Rule:
    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    to_ours: Callable[[Tensors], Tensors]
    to_theirs: Callable[[Tensors], Tensors]


def _same(ours: str, theirs: str) -> Rule:
    return Rule((ours,), (theirs,), lambda t: t, lambda t: t)


def _conv1d(ours: str, theirs: str) -> Rule:
    """GPT-2 Conv1D weight [in, out] <-> nn.Linear weight [out, in]."""
    return Rule((ours,), (theirs,), lambda t: [t[0].t()], lambda t: [t[0].t()])


def _split(ours: tuple[str, ...], theirs: str, dim: int, transpose: bool = False) -> Rule:
    """One fused HF tensor <-> equal chunks of ours along `dim` (after an optional Conv1D transpose)."""
    def to_ours(t: Tensors) -> Tensors:
        w = t[0].t() if transpose else t[0]
        return list(w.chunk(len(ours), dim))

    def to_theirs(t: Tensors) -> Tensors:
        w = torch.cat(t, dim)
        return [w.t() if transpose else w]
    return Rule(ours, (theirs,), to_ours, to_theirs)


def _neox_qkv(ours: tuple[str, ...], theirs: str, n_head: int) -> Rule:
    """GPT-NeoX `query_key_value`: output rows grouped per head as [q_h, k_h, v_h] (hd rows each)."""
    def to_ours(t: Tensors) -> Tensors:
        w = t[0]
        per_head = w.reshape(n_head, 3, w.shape[0] // (3 * n_head), *w.shape[1:])  # (H, 3, hd, [D])
        return [per_head[:, j].reshape(-1, *w.shape[1:]) for j in range(3)]

    def to_theirs(t: Tensors) -> Tensors:
        parts = [x.reshape(n_head, x.shape[0] // n_head, *x.shape[1:]) for x in t]  # (H, hd, [D]) each
        return [torch.stack(parts, 1).reshape(-1, *t[0].shape[1:])]
    return Rule(ours, (theirs,), to_ours, to_theirs)


# ----------------------------------------------------------------------------------------------------------
# state-dict rules


def rules_for(model_type: str, cfg: ModelConfig) -> list[Rule]:
    """The rules covering every parameter of `Transformer(cfg)` for this HF architecture."""
    R: list[Rule] = []
    L = cfg.n_layer
    if model_type == "gpt2":
        R += [_same("tok_emb.weight", "transformer.wte.weight"), _same("pos_emb.weight", "transformer.wpe.weight")]
        for i in range(L):
            h, b = f"transformer.h.{i}.", f"blocks.{i}."
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                R += [_same(b + ours + ".weight", h + theirs + ".weight"), _same(b + ours + ".bias", h + theirs + ".bias")]
            qkv = tuple(b + f"attn.{n}_proj" for n in "qkv")
            R += [_split(tuple(q + ".weight" for q in qkv), h + "attn.c_attn.weight", 0, transpose=True),
                  _split(tuple(q + ".bias" for q in qkv), h + "attn.c_attn.bias", 0)]
            for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
                R += [_conv1d(b + ours + ".weight", h + theirs + ".weight"), _same(b + ours + ".bias", h + theirs + ".bias")]
        R += [_same("norm_f.weight", "transformer.ln_f.weight"), _same("norm_f.bias", "transformer.ln_f.bias")]
    elif model_type in ("llama", "mistral", "qwen2", "qwen3"):
        R.append(_same("tok_emb.weight", "model.embed_tokens.weight"))
        for i in range(L):
            h, b = f"model.layers.{i}.", f"blocks.{i}."
            R += [_same(b + "norm1.weight", h + "input_layernorm.weight"),
                  _same(b + "norm2.weight", h + "post_attention_layernorm.weight")]
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                R.append(_same(b + f"attn.{p}.weight", h + f"self_attn.{p}.weight"))
                if (cfg.qkv_bias if p != "o_proj" else cfg.bias):
                    R.append(_same(b + f"attn.{p}.bias", h + f"self_attn.{p}.bias"))
            if cfg.qk_norm:
                R += [_same(b + "attn.q_norm.weight", h + "self_attn.q_norm.weight"),
                      _same(b + "attn.k_norm.weight", h + "self_attn.k_norm.weight")]
            for p in ("gate_proj", "up_proj", "down_proj"):
                R.append(_same(b + f"mlp.{p}.weight", h + f"mlp.{p}.weight"))
                if cfg.bias:
                    R.append(_same(b + f"mlp.{p}.bias", h + f"mlp.{p}.bias"))
        R.append(_same("norm_f.weight", "model.norm.weight"))
    elif model_type == "gpt_neox":
        R.append(_same("tok_emb.weight", "gpt_neox.embed_in.weight"))
        for i in range(L):
            h, b = f"gpt_neox.layers.{i}.", f"blocks.{i}."
            for ours, theirs in (("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm")):
                R += [_same(b + ours + ".weight", h + theirs + ".weight"), _same(b + ours + ".bias", h + theirs + ".bias")]
            qkv = tuple(b + f"attn.{n}_proj" for n in "qkv")
            R += [_neox_qkv(tuple(q + ".weight" for q in qkv), h + "attention.query_key_value.weight", cfg.n_head),
                  _neox_qkv(tuple(q + ".bias" for q in qkv), h + "attention.query_key_value.bias", cfg.n_head)]
            for ours, theirs in (("attn.o_proj", "attention.dense"), ("mlp.fc", "mlp.dense_h_to_4h"),
                                 ("mlp.proj", "mlp.dense_4h_to_h")):
                R += [_same(b + ours + ".weight", h + theirs + ".weight"), _same(b + ours + ".bias", h + theirs + ".bias")]
        R += [_same("norm_f.weight", "gpt_neox.final_layer_norm.weight"),
              _same("norm_f.bias", "gpt_neox.final_layer_norm.bias")]
    else:
        raise InteropError(f"unknown architecture {model_type!r} (supported: {', '.join(SUPPORTED)})")
    if not cfg.tie_embeddings:
        R.append(_same("lm_head.weight", "embed_out.weight" if model_type == "gpt_neox" else "lm_head.weight"))
    return R


def hf_module_names(model_type: str, cfg: ModelConfig) -> dict[str, str]:
    """Each of our weight-bearing modules -> the HF module holding its weight, read off `rules_for` (one
    table for weights and module names): `blocks.0.attn.q_proj` -> `transformer.h.0.attn.c_attn` (GPT-2,
    fused with k and v), `model.layers.0.self_attn.q_proj` (Llama), `gpt_neox.layers.0.attention.
    query_key_value` (NeoX, fused). LoRA (posttrain/lora.py) matches PEFT's `target_modules` against these."""
    out: dict[str, str] = {}
    for rule in rules_for(model_type, cfg):
        (theirs,) = rule.theirs
        if theirs.endswith(".weight") and all(o.endswith(".weight") for o in rule.ours):
            for o in rule.ours:
                out[o[:-len(".weight")]] = theirs[:-len(".weight")]
    return out


def tied_head_name(model_type: str) -> str:
    """The HF name of the output projection, which a tied checkpoint may carry as a redundant copy."""
    return "embed_out.weight" if model_type == "gpt_neox" else "lm_head.weight"


# ----------------------------------------------------------------------------------------------------------
# config.json -> ModelConfig


def rope_from_hf(d: dict, where: str) -> tuple[float, dict | None, float]:
    """(theta, scaling dict or None, partial rotary factor) from v4 or v5 config keys."""
    params = d.get("rope_parameters") or {}
    legacy = d.get("rope_scaling") or {}
    theta = float(params.get("rope_theta", d.get("rope_theta", d.get("rotary_emb_base", 10000.0))))
    partial = float(params.get("partial_rotary_factor", d.get("partial_rotary_factor", d.get("rotary_pct", 1.0))))
    src = params if params.get("rope_type", "default") != "default" else legacy
    kind = src.get("rope_type", src.get("type", "default"))
    if kind == "default":
        return theta, None, partial
    if kind not in ("linear", "llama3"):
        raise InteropError(f"{where}: RoPE scaling type {kind!r} is not supported (default, linear, llama3)")
    scaling = {"rope_type": kind, **{k: v for k, v in src.items()
                                     if k not in ("rope_theta", "partial_rotary_factor", "rope_type", "type")}}
    return theta, scaling, partial


def _act(name: str, where: str) -> str:
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return "gelu"
    if name == "gelu":
        return "gelu_exact"
    raise InteropError(f"{where}: activation {name!r} is not supported here (gelu, gelu_new)")


def config_from_hf(d: dict, where: str = "config.json") -> ModelConfig:
    """The `ModelConfig` of an HF config.json dict; raises InteropError for what zerollm cannot run."""
    mt = d.get("model_type")
    if mt not in SUPPORTED:
        raise InteropError(f"{where}: unknown architecture model_type={mt!r} "
                           f"(architectures={d.get('architectures')}); supported: {', '.join(SUPPORTED)}")
    try:
        if mt == "gpt2":
            for flag, ok in (("scale_attn_by_inverse_layer_idx", False), ("reorder_and_upcast_attn", False),
                             ("scale_attn_weights", True)):
                if d.get(flag, ok) != ok:
                    raise InteropError(f"{where}: GPT-2 option {flag}={d[flag]} is not supported")
            D = d["n_embd"]
            return ModelConfig(vocab_size=d["vocab_size"], n_layer=d["n_layer"], n_head=d["n_head"], d_model=D,
                               d_ff=d.get("n_inner") or 4 * D, max_seq_len=d["n_positions"], norm="layernorm",
                               norm_eps=d.get("layer_norm_epsilon", 1e-5),
                               mlp=_act(d.get("activation_function", "gelu_new"), where), position="learned",
                               bias=True, tie_embeddings=d.get("tie_word_embeddings", True))
        theta, scaling, partial = rope_from_hf(d, where)
        D, H = d["hidden_size"], d["num_attention_heads"]
        common = dict(vocab_size=d["vocab_size"], n_layer=d["num_hidden_layers"], n_head=H, d_model=D,
                      d_ff=d["intermediate_size"], max_seq_len=d.get("max_position_embeddings", 2048),
                      position="rope", rope_theta=theta, rope_scaling=scaling)
        if mt == "gpt_neox":
            if not d.get("attention_bias", True):
                raise InteropError(f"{where}: GPT-NeoX without attention biases is not supported")
            return ModelConfig(**common, norm="layernorm", norm_eps=d.get("layer_norm_eps", 1e-5),
                               mlp=_act(d.get("hidden_act", "gelu"), where), rotary_pct=partial,
                               parallel_residual=d.get("use_parallel_residual", True), bias=True,
                               tie_embeddings=d.get("tie_word_embeddings", False))
        if d.get("hidden_act", "silu") != "silu":
            raise InteropError(f"{where}: hidden_act {d['hidden_act']!r} is not supported ({mt} uses silu)")
        if partial != 1.0:
            raise InteropError(f"{where}: partial rotary ({partial}) is not supported for {mt}")
        if mt == "qwen2":
            bias, qkv_bias = False, True
        else:
            attn_bias, mlp_bias = d.get("attention_bias", False), d.get("mlp_bias", False)
            if mt == "qwen3" and attn_bias:
                raise InteropError(f"{where}: Qwen3 with attention_bias=true is not supported")
            if attn_bias != mlp_bias:
                raise InteropError(f"{where}: attention_bias={attn_bias} with mlp_bias={mlp_bias} is not "
                                   f"supported (zerollm has one switch for both)")
            bias = qkv_bias = bool(attn_bias)
        window = d.get("sliding_window") if (mt == "mistral" or d.get("use_sliding_window")) else None
        if window:  # exact for sequences up to the window: cap the context there
            common["max_seq_len"] = min(common["max_seq_len"], int(window))
        return ModelConfig(**common, n_kv_head=d.get("num_key_value_heads") or H,
                           head_dim=d.get("head_dim") or D // H, norm="rmsnorm", norm_eps=d.get("rms_norm_eps", 1e-6),
                           mlp="swiglu", bias=bias, qkv_bias=qkv_bias, qk_norm=(mt == "qwen3"),
                           tie_embeddings=d.get("tie_word_embeddings", False))
    except KeyError as e:
        raise InteropError(f"{where}: {mt} config is missing the key {e.args[0]!r}") from None


# ----------------------------------------------------------------------------------------------------------
# ModelConfig -> config.json


def hf_model_type(cfg: ModelConfig) -> str:
    """The HF architecture that runs `cfg` exactly, or InteropError naming what does not fit."""
    c = cfg
    if c.position == "learned":
        if (c.norm, c.mlp, c.bias, c.qkv_bias, c.n_kv_head, c.parallel_residual, c.qk_norm) == \
                ("layernorm", "gelu", True, True, c.n_head, False, False) and c.head_dim * c.n_head == c.d_model:
            return "gpt2"
        raise InteropError("no HF architecture matches this config: learned positions need GPT-2's layout "
                           "(layernorm, tanh gelu, biases, multi-head, head_dim = d_model/n_head)")
    if c.norm == "rmsnorm" and c.mlp == "swiglu" and not c.parallel_residual and c.rotary_pct == 1.0:
        if c.qk_norm:
            if c.bias or c.qkv_bias:
                raise InteropError("no HF architecture matches this config: qk_norm (Qwen3) without biases only")
            return "qwen3"
        if c.qkv_bias and not c.bias:
            return "qwen2"
        if c.qkv_bias == c.bias:
            return "llama"
    if c.norm == "layernorm" and c.mlp in ("gelu_exact", "gelu") and c.bias and c.qkv_bias and \
            c.n_kv_head == c.n_head and not c.qk_norm and c.head_dim * c.n_head == c.d_model:
        return "gpt_neox"
    raise InteropError(f"no HF architecture matches this config (norm={c.norm}, mlp={c.mlp}, bias={c.bias}, "
                       f"qkv_bias={c.qkv_bias}, parallel_residual={c.parallel_residual})")


def _rope_keys(cfg: ModelConfig, partial: bool = False) -> dict:
    """RoPE in both spellings: v4 `rope_theta`/`rope_scaling`, v5 `rope_parameters`."""
    scaling = dict(cfg.rope_scaling) if cfg.rope_scaling else None
    params = {"rope_type": (scaling or {}).get("rope_type", "default"), "rope_theta": cfg.rope_theta,
              **{k: v for k, v in (scaling or {}).items() if k != "rope_type"}}
    if partial:
        params["partial_rotary_factor"] = cfg.rotary_pct
    return {"rope_theta": cfg.rope_theta, "rope_scaling": scaling, "rope_parameters": params}


def config_to_hf(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | list | None = None,
                 pad_id: int | None = None, dtype: str = "float32") -> dict:
    """config.json for `cfg` (the model type from `hf_model_type`), with v4 and v5 keys."""
    mt = hf_model_type(cfg)
    c = cfg
    out: dict = {"architectures": [ARCHITECTURES[mt]], "model_type": mt, "vocab_size": c.vocab_size}
    if mt == "gpt2":
        out.update(n_embd=c.d_model, n_layer=c.n_layer, n_head=c.n_head, n_inner=c.d_ff, n_positions=c.max_seq_len,
                   activation_function="gelu_new", layer_norm_epsilon=c.norm_eps,
                   resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, scale_attn_weights=True)
    else:
        out.update(hidden_size=c.d_model, intermediate_size=c.d_ff, num_hidden_layers=c.n_layer,
                   num_attention_heads=c.n_head, max_position_embeddings=c.max_seq_len, attention_dropout=c.dropout)
        if mt == "gpt_neox":
            out.update(hidden_act="gelu" if c.mlp == "gelu_exact" else "gelu_new", layer_norm_eps=c.norm_eps,
                       use_parallel_residual=c.parallel_residual, rotary_pct=c.rotary_pct,
                       rotary_emb_base=c.rope_theta, attention_bias=True, hidden_dropout=c.dropout,
                       **_rope_keys(c, partial=True))
        else:
            out.update(num_key_value_heads=c.n_kv_head, head_dim=c.head_dim, hidden_act="silu",
                       rms_norm_eps=c.norm_eps, **_rope_keys(c))
            if mt == "llama":
                out.update(attention_bias=c.bias, mlp_bias=c.bias)
            else:
                out.update(use_sliding_window=False, sliding_window=None, max_window_layers=c.n_layer)
                if mt == "qwen3":
                    out["attention_bias"] = False
    out.update(tie_word_embeddings=c.tie_embeddings, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
               torch_dtype=dtype, dtype=dtype, use_cache=True)
    return out
