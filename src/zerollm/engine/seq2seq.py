"""Decoding an encoder-decoder (model/seq2seq.py): greedy and beam search, batched over sentences.

    sources (B sentences) ──encode once──▶ memory ──memory_kv once──▶ cross-attention K/V per decoder layer
    decoder: [bos] ─▶ one token per step through the self-attention KV cache (model/kv_cache.py)

Shared with the decoder-only engine, not forked: the logits processors of engine/sampling.py
(`no_repeat_ngram_size`, repetition penalty, logit bias via `apply_processors`; greedy = `sample_next` at
temperature 0) and the stop rule (`GenerationConfig` + stop_ids). Beam search is engine/beam.py's
`beam_core` (HF semantics), run on B sentences x num_beams beams at once: each sentence keeps its own
hypotheses and length limit, and a sentence that is done leaves the batch while the others go on; this
module supplies only the decoder step, the prefix [bos] and the dropping of finished rows.

Maximum length, relative to the source (fairseq's max_len_a * S + max_len_b), capped by max_new_tokens and
the model's max_seq_len.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .beam import NEG, beam_core
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


def _drop_rows(rows: torch.Tensor, cache, kv, src_mask):
    """Keep batch rows `rows` (in that order) of the decoder state: the self-attention cache, the
    cross-attention keys/values and the source mask."""
    cache.select_rows(rows)
    return [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in kv], src_mask.index_select(0, rows)


def _greedy(model, kv, src_mask, limits, gen, eos) -> list[list[int]]:
    """One argmax token per step for every sentence still translating; a sentence that emits eos or reaches
    its limit leaves the batch (its rows of the caches are dropped), so finished sentences cost nothing."""
    cfg = model.cfg
    B, device = len(limits), src_mask.device
    L = max(limits)
    gen0 = replace(gen, temperature=0.0)
    cache = model.new_cache(B, L)
    ys = torch.full((B, L), cfg.pad_id, dtype=torch.long, device=device)  # bos + tokens; pad after the end
    ys[:, 0] = cfg.bos_id
    act = torch.arange(B, device=device)  # sentences still translating, in the caches' row order
    limit = torch.tensor(limits, device=device)
    eos_t = torch.tensor(sorted(eos), device=device)
    t = 1  # tokens so far (bos included)
    while t < L:
        logits = model.decode(ys[act, t - 1:t], kv, src_mask, cache)[:, -1]  # (A, V)
        nxt = sample_next(logits, None, gen0, ys[act, :t] if needs_history(gen0) else None, 1)  # (A,)
        ys[act, t] = nxt
        t += 1
        done = torch.isin(nxt, eos_t) | (t >= limit)
        if bool(done.any()):
            if bool(done.all()):
                break
            keep = (~done).nonzero().squeeze(1)
            act, limit = act[keep], limit[keep]
            kv, src_mask = _drop_rows(keep, cache, kv, src_mask)
    return [_strip(row[1:], eos, cfg.pad_id) for row in ys.tolist()]


def _beam(model, kv, src_mask, limits, gen, eos):
    """Beam search on B sentences x nb beams through engine/beam.py's `beam_core` (rows b*nb .. b*nb+nb-1
    belong to sentence b); the decoder prefix is [bos]. Returns each sentence's best translation and score."""
    cfg, nb = model.cfg, gen.num_beams
    B, device = len(limits), src_mask.device
    kv = [(k.repeat_interleave(nb, 0), v.repeat_interleave(nb, 0)) for k, v in kv]  # every beam sees its source
    state = {"kv": kv, "src_mask": src_mask.repeat_interleave(nb, 0)}
    cache = model.new_cache(B * nb, max(limits))

    def step(ids: torch.Tensor) -> torch.Tensor:  # (A*nb, t) new decoder tokens -> last-position logits
        return model.decode(ids, state["kv"], state["src_mask"], cache)[:, -1]

    def reorder(src: torch.Tensor) -> None:  # beams take their parent's past; done sentences leave
        if src.numel() == cache.batch_size:  # beams of one sentence share its source: only the cache moves
            cache.select_rows(src)
        else:
            state["kv"], state["src_mask"] = _drop_rows(src, cache, state["kv"], state["src_mask"])

    prefix = torch.tensor([cfg.bos_id], dtype=torch.long, device=device)
    hyps, scores = beam_core(step, reorder, prefix, limits, gen, sorted(eos))
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
