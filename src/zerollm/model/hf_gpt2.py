"""Hugging Face GPT-2 <-> zerollm `Transformer` (kept for its users; the mapping lives in `zerollm.interop`).

`zerollm.interop.hf_arch` holds the GPT-2 rules (Conv1D [in, out] weights transposed into nn.Linear's
[out, in]; `c_attn` split into q/k/v) together with Llama, Mistral, Qwen2/3 and GPT-NeoX; these names are
thin wrappers over it. transformers is imported lazily, only by the functions that build HF objects.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .transformer import Transformer


def config_from_hf_gpt2(hf_config) -> ModelConfig:
    """ModelConfig equivalent to a `transformers.GPT2Config` (or a config.json dict)."""
    from zerollm.interop.hf_arch import config_from_hf

    d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    return config_from_hf({"model_type": "gpt2", **d})


def hf_gpt2_config(cfg: ModelConfig):
    """A `transformers.GPT2Config` for a GPT-2-shaped ModelConfig (raises if the variant is not GPT-2)."""
    from transformers import GPT2Config

    from zerollm.interop.hf_arch import config_to_hf

    d = config_to_hf(cfg, cfg.vocab_size - 1, cfg.vocab_size - 1)
    if d["model_type"] != "gpt2":
        raise ValueError("only GPT-2-shaped configs (layernorm, learned positions, gelu, biases, MHA) export "
                         "to GPT2Config")
    return GPT2Config(**{k: v for k, v in d.items() if k not in ("architectures", "model_type", "torch_dtype",
                                                                  "dtype", "use_cache")})


def state_dict_from_hf_gpt2(sd: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """HF GPT-2 state dict (with or without the `transformer.` prefix) -> our names."""
    from zerollm.interop.hf_arch import rules_for

    sd = {k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k: v for k, v in sd.items()}
    tied = "lm_head.weight" not in sd or torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])
    D = sd["transformer.wte.weight"].shape[1]
    cfg = ModelConfig(n_layer=n_layer, n_head=1, d_model=D, tie_embeddings=tied)
    out = {}
    for rule in rules_for("gpt2", cfg):
        out.update(zip(rule.ours, (t.contiguous() for t in rule.to_ours([sd[n] for n in rule.theirs]))))
    return out


def state_dict_to_hf_gpt2(model: Transformer) -> dict[str, torch.Tensor]:
    """Our GPT-2-shaped model -> HF GPT2LMHeadModel state dict (`transformer.` prefix, Conv1D layout)."""
    from zerollm.interop.hf_arch import rules_for

    sd, out = model.state_dict(), {}
    for rule in rules_for("gpt2", model.cfg):
        out.update(zip(rule.theirs, (t.contiguous() for t in rule.to_theirs([sd[n] for n in rule.ours]))))
    out.setdefault("lm_head.weight", sd["tok_emb.weight"])
    return out


def from_hf_gpt2(hf_model) -> Transformer:
    """A zerollm Transformer with the weights of a `transformers.GPT2LMHeadModel`."""
    from zerollm.interop.hf import from_hf_model

    return from_hf_model(hf_model)


def to_hf_gpt2(model: Transformer):
    """A `transformers.GPT2LMHeadModel` (fp32, eval mode) with our model's weights."""
    from zerollm.interop.hf import to_hf_model

    return to_hf_model(model)
