"""`zerollm model info`: a model's architecture, parameters and FLOPs per token.

    zerollm model info --preset gpt2-124m [--seq-len 1024]
    zerollm model info --model DIR
"""
from __future__ import annotations

from dataclasses import dataclass

from zerollm.config import model_config_from_preset
from zerollm.loading import load
from zerollm.model.transformer import Transformer


@dataclass
class ModelInfoConfig:
    preset: str | None = None
    model: str | None = None
    seq_len: int | None = None


def model_info(preset: str | None = None, model: str | None = None, seq_len: int | None = None) -> str:
    m = load(model, "cpu", with_tokenizer=False).model if model else \
        Transformer(model_config_from_preset(preset or "gpt2-124m"))
    seq = seq_len or m.cfg.max_seq_len
    return "\n".join([m.describe(),
                      f"parameters: {m.num_params():,} ({m.num_params(non_embedding=True):,} non-embedding)",
                      f"FLOPs per token (forward+backward, T={seq}): {m.flops_per_token(seq):,.0f}"])


__all__ = ["model_info"]
