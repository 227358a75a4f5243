"""The textbook decode loop for one prompt: the definition the `Engine` is tested against.

    prompt ids ──prefill (one forward over the prompt, filling the KV cache)──▶ logits of the last position
        └─▶ loop: sample a token ─▶ stop id / stop string? ─▶ keep it ─▶ forward(it, cache) ─▶ logits ...

Nothing here is tuned: the model runs as plain `model(...)` (no native decode step), the history for the
penalties is rebuilt every step and stop strings are searched in the whole text so far (complete UTF-8
characters: a character split across tokens counts once its last byte arrives). `Engine` produces
the same tokens (tests/test_engine.py) while batching, streaming and running the native kernels.

Finish reasons: "stop" (a stop token id or stop string) or "length" (max_new_tokens reached, or the model's
context window is full: generation stops rather than sliding the window, which would silently change what the
model conditions on; the chat layer truncates history instead).
"""
from __future__ import annotations

import codecs
from typing import Sequence

import torch

from ..model.kv_cache import KVCache
from .config import GenerationConfig, first_stop, stop_ids
from .sampling import needs_history, sample_next


def reference_generate(model, prompt_ids: Sequence[int], gen_cfg: GenerationConfig,
                       tokenizer=None) -> tuple[list[int], str]:
    """(new token ids, finish reason). A stop token id ends generation and is not included; a stop string
    (in the text of the new tokens' bytes, tokenizer.token_bytes) ends it after the token that completed it."""
    device = next(model.parameters()).device
    prompt = list(prompt_ids)
    P, stops = len(prompt), [s for s in gen_cfg.stop_strings if s]
    ends = stop_ids(gen_cfg, tokenizer)
    generator = torch.Generator(device=device).manual_seed(gen_cfg.seed) if gen_cfg.seed is not None else None
    out: list[int] = []
    decoder, text = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
    if gen_cfg.max_new_tokens <= 0:
        return out, "length"
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # the last token produced is never fed back, so P + max_new - 1 slots suffice (capped at the context)
            cache = KVCache.for_model(model, batch_size=1, max_len=max(P, P + gen_cfg.max_new_tokens - 1))
            logits = model(torch.tensor([prompt], device=device), cache=cache)[:, -1]  # prefill -> (1, V)
            while True:
                history = torch.tensor([prompt + out], device=device) if needs_history(gen_cfg) else None
                tok = int(sample_next(logits, generator, gen_cfg, history, P))
                if tok in ends:
                    return out, "stop"
                out.append(tok)
                if stops:
                    text += decoder.decode(tokenizer.token_bytes(tok))  # complete characters only
                    if first_stop(text, stops) is not None:
                        return out, "stop"
                if len(out) >= gen_cfg.max_new_tokens or cache.pos >= cache.max_len:
                    # a dangling partial character becomes U+FFFD, which may still complete a stop string
                    tail = decoder.decode(b"", final=True) if stops else ""
                    return out, "stop" if tail and first_stop(text + tail, stops) is not None else "length"
                logits = model(torch.tensor([[tok]], device=device), cache=cache)[:, -1]  # (1, V)
    finally:
        model.train(was_training)
