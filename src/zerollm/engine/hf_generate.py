"""`model.generate(input_ids, ...)` shaped like transformers', running on zerollm's decoders.

The books' listings call `model.generate(input_ids, max_length=100, num_return_sequences=3, do_sample=True,
temperature=0.8, top_k=50, top_p=0.95, no_repeat_ngram_size=2)` and read back a LongTensor of token ids.
This module translates those keywords into a `GenerationConfig` and hands the work to the engine:

    input_ids (B, T) [+ attention_mask]  ──rows without padding──▶  num_beams > 1: engine/beam.py (one per row)
                                                                     else: engine/engine.py's Engine (batched)
    ◀── (B * num_return_sequences, T + new) LongTensor: the input row as given, the new ids (eos included),
        then pad_token_id up to the longest sequence (transformers' layout)

Semantics are transformers' (its `GenerationConfig` defaults, `_get_default_generation_params`):
- greedy unless `do_sample=True`; beam search when `num_beams > 1`;
- `max_length` (default 20) counts the prompt; `max_new_tokens` does not and wins when both are given;
- sampling defaults: temperature 1.0, **top_k 50**, top_p 1.0 (pass top_k=0 to turn top-k off);
- `num_return_sequences` > 1 needs sampling or beams (as transformers: greedy would repeat one sequence);
- sampling draws from torch's global RNG one row after another, so `torch.manual_seed(s)` before the call
  gives the same ids as transformers after the same seed (tests/engine/test_engine_hf_generate.py) until a
  row ends early: transformers keeps drawing for finished rows, the Engine drops them, so the later draws
  of the other rows differ (greedy and beams match regardless);
- pad_token_id defaults to the first eos id (transformers' fallback); the attention mask, when not given,
  is `input_ids != pad_token_id` if the pad id occurs in the input and is not an eos id, else all ones.
A model loaded by `zerollm.from_pretrained` carries its directory's generation defaults in
`model.generation_config` (a dict: eos/pad ids, generation_config.json); keywords override them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .beam import beam_search
from .config import GenerationConfig
from .engine import Engine

# transformers' defaults for what a call does not set (transformers/generation/configuration_utils.py)
HF_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "do_sample": False, "num_beams": 1, "temperature": 1.0,
    "top_k": 50, "top_p": 1.0, "min_p": None, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "num_return_sequences": 1, "length_penalty": 1.0, "early_stopping": False, "eos_token_id": None,
    "pad_token_id": None, "bos_token_id": None, "use_cache": True,
}


@dataclass
class ResolvedSampling:
    temperature: float  # 0 = greedy
    top_k: int | None
    top_p: float
    min_p: float


def resolve_sampling(do_sample: bool | None, temperature: float | None, top_k: int | None = None,
                     top_p: float | None = None, min_p: float | None = None) -> ResolvedSampling:
    """The one rule every zerollm entry point (model.generate, zerollm.api.generate, `zerollm generate`)
    uses to turn transformers-style flags into zerollm's (temperature 0 = greedy):

    do_sample False → greedy (the sampling flags are ignored, as transformers does);
    do_sample True  → sample at `temperature` (default 1.0) with top_k (default 50; 0 = off) and top_p;
    do_sample None  → zerollm's shorthand: sample iff a temperature > 0 is given, else greedy."""
    sample = bool(temperature) if do_sample is None else bool(do_sample)
    if not sample:
        return ResolvedSampling(0.0, None, 1.0, 0.0)
    t = 1.0 if temperature is None else float(temperature)
    if t <= 0:
        raise ValueError(f"do_sample=True needs temperature > 0, got {temperature}")
    return ResolvedSampling(t, 50 if top_k is None else int(top_k), 1.0 if top_p is None else float(top_p),
                            float(min_p or 0.0))


def _as_list(x) -> list[int]:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.view(-1).tolist()]
    return [int(v) for v in x] if isinstance(x, (list, tuple)) else [int(x)]


def _options(model, generation_config, kwargs: dict) -> dict:
    unknown = sorted(set(kwargs) - set(HF_DEFAULTS) - {"seed"})
    if unknown:
        raise TypeError(f"generate() got unsupported keyword(s) {unknown}; supported: {sorted(HF_DEFAULTS)}")
    opts = dict(HF_DEFAULTS)
    for layer in (getattr(model, "generation_config", None), generation_config):
        if layer is None:
            continue
        layer = layer if isinstance(layer, dict) else (layer.to_dict() if hasattr(layer, "to_dict") else vars(layer))
        opts.update({k: v for k, v in layer.items() if k in HF_DEFAULTS and v is not None})
    opts.update({k: v for k, v in kwargs.items() if v is not None})  # None = "not set", as in transformers
    return opts


def generate(model, input_ids, attention_mask=None, generation_config=None, **kwargs) -> torch.LongTensor:
    """transformers' `generate` for a zerollm model: see the module docstring. Returns a LongTensor of shape
    (batch * num_return_sequences, total length) on the input's device."""
    o = _options(model, generation_config, kwargs)
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    B, T = ids.shape
    eos = _as_list(o["eos_token_id"])
    pad = o["pad_token_id"] if o["pad_token_id"] is not None else (eos[0] if eos else None)
    if attention_mask is None:
        attention_mask = (ids != pad) if pad is not None and pad not in eos and bool((ids == pad).any()) \
            else torch.ones_like(ids)
    mask = torch.as_tensor(attention_mask).bool().cpu()
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}")
    prompts = [row[m].tolist() for row, m in zip(ids.cpu(), mask)]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a row of input_ids has no unmasked token to generate from")

    new = o["max_new_tokens"] if o["max_new_tokens"] is not None else o["max_length"] - T
    if new <= 0:
        raise ValueError(f"input_ids have {T} tokens but max_length is {o['max_length']}: "
                         f"raise max_length or give max_new_tokens")
    n, nb = int(o["num_return_sequences"]), int(o["num_beams"])
    s = resolve_sampling(o["do_sample"], o["temperature"], o["top_k"], o["top_p"], o["min_p"])
    common = dict(max_new_tokens=int(new), repetition_penalty=float(o["repetition_penalty"]),
                  no_repeat_ngram_size=int(o["no_repeat_ngram_size"]), stop_token_ids=eos,
                  num_return_sequences=n)
    if nb > 1:
        if s.temperature > 0:
            raise ValueError("beam sampling (num_beams > 1 with do_sample=True) is not supported: use one of them")
        cfg = GenerationConfig(temperature=0.0, num_beams=nb, length_penalty=float(o["length_penalty"]),
                               early_stopping=o["early_stopping"], **common)
        outs = [beam_search(model, p, cfg, keep_eos=True) for p in prompts]
    else:
        if n > 1 and s.temperature == 0:
            raise ValueError("greedy search returns one sequence: num_return_sequences > 1 needs do_sample=True "
                             "or num_beams >= num_return_sequences (as transformers)")
        cfg = GenerationConfig(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                               seed=o.get("seed"), **common)
        engine = Engine(model, None, max_batch_size=B * n, max_len=max(len(p) for p in prompts) + new)
        handles = [engine.submit(p, cfg) for p in prompts]  # rows sample in order: the global RNG as HF uses it
        engine.run_until_done()
        outs = [[c.token_ids + ([c.stop_token_id] if c.stop_token_id is not None else []) for c in h.results()]
                for h in handles]
    rows = [ids[b].tolist() + seq for b in range(B) for seq in outs[b]]
    width = max(len(r) for r in rows)
    if any(len(r) < width for r in rows) and pad is None:
        raise ValueError("sequences ended at different lengths: give pad_token_id (or eos_token_id)")
    out = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    return out.to(ids.device if isinstance(input_ids, torch.Tensor) else "cpu")


__all__ = ["generate", "resolve_sampling", "HF_DEFAULTS"]
