"""Decoding an encoder-decoder (model/seq2seq.py): greedy and beam search, batched over sentences.

    sources (B sentences) ──encode once──▶ memory ──memory_kv once──▶ cross-attention K/V per decoder layer
    decoder: [bos] ─▶ one token per step through the self-attention KV cache (model/kv_cache.py)

Shared with the decoder-only engine, not forked: the logits processors of engine/sampling.py
(`no_repeat_ngram_size`, repetition penalty, logit bias via `apply_processors`; greedy = `sample_next` at
temperature 0) and the stop rule (`GenerationConfig` + stop_ids). Beam search is engine/beam.py's
`beam_core` (HF semantics), run on B sentences x num_beams beams at once: each sentence keeps its own
hypotheses and length limit, and a sentence that is done stops changing while the others go on; this module
supplies only the decoder step and the prefix [bos].

Maximum length, relative to the source (fairseq's max_len_a * S + max_len_b), capped by max_new_tokens and
the model's max_seq_len.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .beam import NEG, beam_core, reorder_cache
from .config import GenerationConfig, stop_ids
from .sampling import needs_history, sample_next


def _pad(seqs: list[list[int]], pad_id: int, eos_id: int, device) -> torch.Tensor:
    S = max(len(s) for s in seqs) + 1
    src = torch.full((len(seqs), S), pad_id, dtype=torch.long, device=device)
    for b, s in enumerate(seqs):
        src[b, :len(s) + 1] = torch.tensor(list(s) + [eos_id], device=device)
    return src


def max_lengths(src_lens: list[int], gen: GenerationConfig, max_seq_len: int, a: float, b: int) -> list[int]:
    """Decoder length limit per sentence (bos included): 1 + min(a*S + b, max_new_tokens, max_seq_len - 1)."""
    return [1 + max(1, min(int(a * n + b), gen.max_new_tokens, max_seq_len - 1)) for n in src_lens]


def _strip(ids: list[int], eos: set[int], pad_id: int) -> list[int]:
    out = []
    for t in ids:
        if t in eos or t < 0 or t == pad_id:  # eos, an unfilled slot, or padding after a finished row
            break
        out.append(t)
    return out


@torch.inference_mode()
def translate_batch(model, sources: list[list[int]], gen: GenerationConfig | None = None, *,
                    max_len_a: float = 1.5, max_len_b: int = 10, return_scores: bool = False,
                    ban_special: bool = True):
    """Translations (token ids, eos excluded) of `sources` (token ids, eos not included) in one batch:
    greedy when gen.num_beams == 1, else beam search. `ban_special`: pad and bos get logit bias -1e9.
    Returns a list of id lists (and with return_scores,
    each one's length-normalised beam score, or None for greedy)."""
    gen = gen or GenerationConfig(temperature=0.0, max_new_tokens=256)
    cfg = model.cfg
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        src = _pad(sources, cfg.pad_id, cfg.eos_id, device)
        limits = max_lengths([len(s) + 1 for s in sources], gen, cfg.max_seq_len, max_len_a, max_len_b)
        memory, src_mask = model.encode(src)
        kv = model.memory_kv(memory)  # cross-attention keys/values: once per source sentence
        eos = set(stop_ids(gen, None)) if gen.stop_token_ids is not None else {cfg.eos_id}
        if ban_special:  # a translation never contains pad or a second bos (HF: bad_words_ids)
            gen = replace(gen, logit_bias={**(gen.logit_bias or {}), cfg.pad_id: NEG, cfg.bos_id: NEG})
        if gen.num_beams == 1:
            out = _greedy(model, kv, src_mask, limits, gen, eos)
            return (out, [None] * len(out)) if return_scores else out
        out, scores = _beam(model, kv, src_mask, limits, gen, eos)
        return (out, scores) if return_scores else out
    finally:
        model.train(was)


def _greedy(model, kv, src_mask, limits, gen, eos) -> list[list[int]]:
    cfg = model.cfg
    B, device = len(limits), src_mask.device
    L = max(limits)
    gen0 = replace(gen, temperature=0.0)
    cache = model.new_cache(B, L)
    ys = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    limit = torch.tensor(limits, device=device)
    eos_t = torch.tensor(sorted(eos), device=device)
    while ys.shape[1] < L and not bool(done.all()):
        logits = model.decode(ys[:, -1:], kv, src_mask, cache)[:, -1]  # (B, V)
        nxt = sample_next(logits, None, gen0, ys if needs_history(gen0) else None, 1)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, cfg.pad_id), nxt)
        ys = torch.cat([ys, nxt[:, None]], 1)
        done |= torch.isin(nxt, eos_t) | (ys.shape[1] >= limit)
    return [_strip(row[1:], eos, cfg.pad_id) for row in ys.tolist()]


def _beam(model, kv, src_mask, limits, gen, eos):
    """Beam search on B sentences x nb beams through engine/beam.py's `beam_core` (rows b*nb .. b*nb+nb-1
    belong to sentence b); the decoder prefix is [bos]. Returns each sentence's best translation and score."""
    cfg, nb = model.cfg, gen.num_beams
    B, device = len(limits), src_mask.device
    kv = [(k.repeat_interleave(nb, 0), v.repeat_interleave(nb, 0)) for k, v in kv]  # every beam sees its source
    src_mask = src_mask.repeat_interleave(nb, 0)
    cache = model.new_cache(B * nb, max(limits))

    def step(ids: torch.Tensor) -> torch.Tensor:  # (B*nb, t) new decoder tokens -> last-position logits
        return model.decode(ids, kv, src_mask, cache)[:, -1]

    prefix = torch.tensor([cfg.bos_id], dtype=torch.long, device=device)
    hyps, scores = beam_core(step, reorder_cache(cache), prefix, limits, gen, sorted(eos))
    return [_strip(h[0], eos, cfg.pad_id) for h in hyps], [s[0] for s in scores]


def translate_ids(model, sources: list[list[int]], gen: GenerationConfig | None = None, *, batch_size: int = 64,
                  max_len_a: float = 1.5, max_len_b: int = 10) -> list[list[int]]:
    """Translate many sentences: batches of similar source length (less padding), results in input order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int] | None] = [None] * len(sources)
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        hyps = translate_batch(model, [sources[i] for i in idx], gen, max_len_a=max_len_a, max_len_b=max_len_b)
        for i, h in zip(idx, hyps):
            out[i] = h
    return out  # type: ignore[return-value]


__all__ = ["max_lengths", "translate_batch", "translate_ids"]
