"""Hugging Face GPT-2 <-> zerollm `Transformer`: config and state-dict name mapping.

Small on purpose (parity tests and the decode benchmark); the full interop module (Llama/Qwen/NeoX, files,
tokenizers) builds on the same idea. HF GPT-2 stores its linear layers as `Conv1D` with weight [in, out]
(y = x @ W + b), so each is transposed into `nn.Linear`'s [out, in]; `c_attn` holds q, k, v side by side
(each D wide, heads as contiguous hd-wide chunks), which we split into q_proj/k_proj/v_proj.

    transformer.wte                 tok_emb             transformer.h.{i}.attn.c_attn  attn.{q,k,v}_proj (T)
    transformer.wpe                 pos_emb             transformer.h.{i}.attn.c_proj  attn.o_proj (T)
    transformer.h.{i}.ln_1          blocks.{i}.norm1    transformer.h.{i}.mlp.c_fc     mlp.fc (T)
    transformer.h.{i}.ln_2          blocks.{i}.norm2    transformer.h.{i}.mlp.c_proj   mlp.proj (T)
    transformer.ln_f                norm_f              (T) = transposed

transformers is imported lazily and only by the functions that build HF objects.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .transformer import Transformer


def config_from_hf_gpt2(hf_config) -> ModelConfig:
    """ModelConfig equivalent to a `transformers.GPT2Config` (or anything with the same attributes)."""
    act = getattr(hf_config, "activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"GPT-2 activation {act!r} is not supported")
    return ModelConfig(
        vocab_size=hf_config.vocab_size, n_layer=hf_config.n_layer, n_head=hf_config.n_head,
        d_model=hf_config.n_embd, d_ff=getattr(hf_config, "n_inner", None) or 4 * hf_config.n_embd,
        max_seq_len=hf_config.n_positions, norm="layernorm", norm_eps=hf_config.layer_norm_epsilon,
        mlp="gelu_exact" if act == "gelu" else "gelu", position="learned", bias=True,
        tie_embeddings=getattr(hf_config, "tie_word_embeddings", True))


def hf_gpt2_config(cfg: ModelConfig):
    """A `transformers.GPT2Config` for a GPT-2-shaped ModelConfig (raises if the variant is not GPT-2)."""
    from transformers import GPT2Config

    if not (cfg.norm == "layernorm" and cfg.position == "learned" and cfg.mlp in ("gelu", "gelu_exact")
            and cfg.bias and cfg.n_kv_head == cfg.n_head and cfg.head_dim * cfg.n_head == cfg.d_model
            and not cfg.parallel_residual and not cfg.qk_norm):
        raise ValueError("only GPT-2-shaped configs (layernorm, learned positions, gelu, biases, MHA) export "
                         "to GPT2Config")
    return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.d_model,
                      n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=cfg.d_ff,
                      activation_function="gelu_new" if cfg.mlp == "gelu" else "gelu",
                      layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=cfg.vocab_size - 1,
                      eos_token_id=cfg.vocab_size - 1)


def state_dict_from_hf_gpt2(sd: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """HF GPT-2 state dict (with or without the `transformer.` prefix) -> our names."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"tok_emb.weight": sd["wte.weight"], "pos_emb.weight": sd["wpe.weight"],
           "norm_f.weight": sd["ln_f.weight"], "norm_f.bias": sd["ln_f.bias"]}
    if "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"], sd["wte.weight"]):
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[b + ours + ".weight"], out[b + ours + ".bias"] = sd[h + theirs + ".weight"], sd[h + theirs + ".bias"]
        w, bias = sd[h + "attn.c_attn.weight"].t(), sd[h + "attn.c_attn.bias"]  # (3D, D), (3D,)
        for name, wi, bi in zip(("q_proj", "k_proj", "v_proj"), w.chunk(3, 0), bias.chunk(3, 0)):
            out[b + f"attn.{name}.weight"], out[b + f"attn.{name}.bias"] = wi.contiguous(), bi.contiguous()
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            out[b + ours + ".weight"] = sd[h + theirs + ".weight"].t().contiguous()
            out[b + ours + ".bias"] = sd[h + theirs + ".bias"]
    return out


def state_dict_to_hf_gpt2(model: Transformer) -> dict[str, torch.Tensor]:
    """Our GPT-2-shaped model -> HF GPT2LMHeadModel state dict (`transformer.` prefix, Conv1D layout)."""
    sd = model.state_dict()
    out = {"transformer.wte.weight": sd["tok_emb.weight"], "transformer.wpe.weight": sd["pos_emb.weight"],
           "transformer.ln_f.weight": sd["norm_f.weight"], "transformer.ln_f.bias": sd["norm_f.bias"]}
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["tok_emb.weight"])
    for i in range(model.cfg.n_layer):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = sd[b + ours + ".weight"], sd[b + ours + ".bias"]
        qkv = [sd[b + f"attn.{n}.weight"] for n in ("q_proj", "k_proj", "v_proj")]
        out[h + "attn.c_attn.weight"] = torch.cat(qkv, 0).t().contiguous()  # (D, 3D)
        out[h + "attn.c_attn.bias"] = torch.cat([sd[b + f"attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")])
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            out[h + theirs + ".weight"] = sd[b + ours + ".weight"].t().contiguous()
            out[h + theirs + ".bias"] = sd[b + ours + ".bias"]
    return out


def from_hf_gpt2(hf_model) -> Transformer:
    """A zerollm Transformer with the weights of a `transformers.GPT2LMHeadModel`."""
    cfg = config_from_hf_gpt2(hf_model.config)
    model = Transformer(cfg)
    model.load_state_dict(state_dict_from_hf_gpt2(hf_model.state_dict(), cfg.n_layer), strict=True)
    return model.to(hf_model.device)


def to_hf_gpt2(model: Transformer):
    """A `transformers.GPT2LMHeadModel` (fp32, eval mode) with our model's weights."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel(hf_gpt2_config(model.cfg))
    missing, unexpected = hf.load_state_dict(state_dict_to_hf_gpt2(model), strict=False)
    missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"GPT-2 export mismatch: missing {missing}, unexpected {unexpected}")
    return hf.to(model.device).eval()
