"""Decoding an encoder-decoder (model/seq2seq.py): greedy and beam search, batched over sentences.

    sources (B sentences) ──encode once──▶ memory ──memory_kv once──▶ cross-attention K/V per decoder layer
    decoder: [bos] ─▶ one token per step through the self-attention KV cache (model/kv_cache.py)

Shared with the decoder-only engine, not forked: the logits processors of engine/sampling.py
(`no_repeat_ngram_size`, repetition penalty, logit bias via `apply_processors`; greedy = `sample_next` at
temperature 0), the stop rule (`GenerationConfig` + stop_ids) and beam search's scoring rules of
engine/beam.py (HF semantics): a finished hypothesis scores sum_logprob / len ** length_penalty (len =
generated tokens, eos included), 2 x num_beams candidates per step, and `early_stopping` True / False /
"never". Here the same step runs on B x num_beams rows at once: each sentence keeps its own hypotheses,
and a sentence that is done stops changing while the others go on.

Maximum length, relative to the source (fairseq's max_len_a * S + max_len_b), capped by max_new_tokens and
the model's max_seq_len.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .beam import NEG
from .config import GenerationConfig, stop_ids
from .sampling import apply_processors, needs_history, sample_next


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
    """Beam search on B sentences x nb beams (rows b*nb .. b*nb+nb-1 belong to sentence b)."""
    cfg, nb = model.cfg, gen.num_beams
    B, device = len(limits), src_mask.device
    L, P = max(limits), 1  # P: the decoder prompt is [bos]
    lp, es = gen.length_penalty, gen.early_stopping
    eos_t = torch.tensor(sorted(eos), device=device)
    keep = max(2, 1 + len(eos)) * nb
    top_mask = torch.arange(keep, device=device) < nb  # (keep,)
    limit = torch.tensor(limits, device=device)  # (B,)
    kv = [(k.repeat_interleave(nb, 0), v.repeat_interleave(nb, 0)) for k, v in kv]
    src_mask = src_mask.repeat_interleave(nb, 0)
    cache = model.new_cache(B * nb, L)

    running = torch.full((B, nb, L), -1, dtype=torch.long, device=device)
    running[:, :, 0] = cfg.bos_id
    running_scores = torch.full((B, nb), NEG, device=device)
    running_scores[:, 0] = 0.0
    seqs = torch.full((B, nb, L), -1, dtype=torch.long, device=device)
    scores = torch.full((B, nb), NEG, device=device)
    finished = torch.zeros(B, nb, dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)[:, None]
    cur = P
    hidden_in = running[:, :, :1].reshape(B * nb, 1)
    while cur < L:
        logits = model.decode(hidden_in, kv, src_mask, cache)[:, -1]  # (B*nb, V)
        V = logits.shape[-1]
        logprobs = logits.float().log_softmax(-1)
        prev = running[:, :, :cur].reshape(B * nb, cur)
        logprobs = apply_processors(logprobs, gen, prev if needs_history(gen) else None, P)
        flat = (logprobs.view(B, nb, V) + running_scores[:, :, None]).view(B, nb * V)
        top_lp, top_idx = flat.topk(keep, dim=-1)  # (B, keep)
        src_beam, tok = top_idx // V, top_idx % V
        cand = running[rows, src_beam].clone()  # (B, keep, L)
        cand[:, :, cur] = tok
        hits = torch.isin(tok, eos_t) | (cur + 1 >= limit)[:, None]  # (B, keep)

        # next running beams: the best nb candidates that did not finish
        live_lp = top_lp + hits.float() * NEG
        nxt = live_lp.topk(nb, dim=-1).indices  # (B, nb)
        running, running_scores = cand[rows, nxt], live_lp[rows, nxt]
        beam_src = src_beam[rows, nxt]  # (B, nb)

        # finished hypotheses: candidates in the top nb that hit eos / the length limit
        just_done = hits & top_mask
        norm = top_lp / ((cur + 1 - P) ** lp)
        norm = norm + (done[:, None] | ~just_done).float() * NEG  # a finished sentence no longer changes
        merged = torch.cat([scores, norm], 1)  # (B, nb + keep)
        best = merged.topk(nb, dim=-1).indices
        seqs = torch.cat([seqs, cand], 1)[rows, best]
        scores = merged[rows, best]
        finished = torch.cat([finished, just_done], 1)[rows, best]

        cur += 1
        # HF's stopping rule per sentence (engine/beam.py)
        length = ((limit - P).float() if (es == "never" and lp > 0)
                  else torch.full((B,), float(cur - P), device=device))
        best_running = running_scores[:, 0] / (length ** lp)
        worst_done = torch.where(finished.all(-1), scores.min(-1).values, torch.full_like(best_running, NEG))
        done |= ~(best_running > worst_done) | (finished.all(-1) & (es is True)) | hits.all(-1)
        if bool(done.all()):
            break
        flat_src = (torch.arange(B, device=device)[:, None] * nb + beam_src).view(-1)
        for t in (*cache.k, *cache.v):  # reorder the cache rows to follow their beams
            t.copy_(t.index_select(0, flat_src))
        hidden_in = running[:, :, cur - 1:cur].reshape(B * nb, 1)

    out = [_strip(seqs[b, 0, P:].tolist(), eos, cfg.pad_id) for b in range(B)]
    return out, [float(scores[b, 0]) for b in range(B)]


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
