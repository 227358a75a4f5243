"""Beam search (deterministic), step for step the algorithm of Hugging Face `generate(num_beams=...)`.

Beam search keeps the `num_beams` highest-scoring partial sequences (score = sum of token log-probs) and
extends each by every token; a sequence that emits eos (or reaches the length limit) becomes a finished
*hypothesis* with score sum_logprob / len ** length_penalty (len = generated tokens, eos included), as in
Wu et al. 2016 (GNMT) / HF. One step:

    log_probs = log_softmax(logits)  ─▶ processors (repetition penalty, no-repeat-n-gram, logit bias; on
                                         log-probs, as HF) ─▶ + running beam score
    top 2*num_beams candidates over (num_beams x V)   (2x: enough live ones even if num_beams end at eos)
    finished candidates among the top num_beams  ─▶ merged into the hypotheses (best num_beams kept)
    best num_beams non-finished candidates         ─▶ next running beams (KV cache rows reordered)

Stopping (`early_stopping`, HF semantics): True stops once num_beams hypotheses exist; False stops when
the best running beam, normalised at its current length, cannot beat the worst hypothesis; "never" uses
the max length for that bound when length_penalty > 0 (the canonical beam search).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model.kv_cache import KVCache
from . import native
from .config import GenerationConfig, stop_ids
from .sampling import apply_processors, needs_history

NEG = -1.0e9


def beam_search(model, prompt_ids: Sequence[int], gen_cfg: GenerationConfig, tokenizer=None,
                return_scores: bool = False, keep_eos: bool = False):
    """The best `gen_cfg.num_return_sequences` beams (lists of new token ids, eos excluded unless
    `keep_eos`, as transformers' output keeps it), best first;
    with return_scores, also their length-normalised scores. Uses num_beams, length_penalty,
    early_stopping, max_new_tokens, repetition_penalty, no_repeat_ngram_size, logit_bias and the stop
    token ids (default: the tokenizer's eos)."""
    nb, cfg = gen_cfg.num_beams, gen_cfg
    if cfg.num_return_sequences > nb:
        raise ValueError("num_return_sequences must be <= num_beams")
    device = next(model.parameters()).device
    prompt = torch.as_tensor(list(prompt_ids), dtype=torch.long, device=device)
    P = prompt.numel()
    max_length = min(P + cfg.max_new_tokens, model.cfg.max_seq_len)
    eos = sorted(stop_ids(cfg, tokenizer))
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    keep = max(2, 1 + len(eos)) * nb
    top_mask = torch.arange(keep, device=device) < nb  # (keep,)
    lp, es = cfg.length_penalty, cfg.early_stopping

    running = torch.full((nb, max_length), -1, dtype=torch.long, device=device)
    running[:, :P] = prompt
    running_scores = torch.full((nb,), NEG, device=device)
    running_scores[0] = 0.0
    seqs = torch.full((nb, max_length), -1, dtype=torch.long, device=device)
    scores = torch.full((nb,), NEG, device=device)
    finished = torch.zeros(nb, dtype=torch.bool, device=device)
    improvable = True

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            cache = KVCache.for_model(model, batch_size=nb, max_len=max_length)
            hidden = native.forward(model, running[:, :P], cache)
            cur = P
            while cur < max_length:
                logits = native.logits(model, hidden[:, -1])  # (nb, V)
                V = logits.shape[-1]
                logprobs = logits.float().log_softmax(-1)
                logprobs = apply_processors(logprobs, cfg, running[:, :cur] if needs_history(cfg) else None, P)
                flat = (logprobs + running_scores[:, None]).view(-1)  # (nb*V,)
                top_lp, top_idx = flat.topk(keep)
                src, tok = top_idx // V, top_idx % V
                cand = running[src].clone()
                cand[:, cur] = tok
                hits = torch.isin(tok, eos_t) | (cur + 1 >= max_length)  # (keep,)

                # next running beams: best nb candidates that did not finish
                live_lp = top_lp + hits.float() * NEG
                nxt = live_lp.topk(nb).indices
                running, running_scores, beam_src = cand[nxt], live_lp[nxt], src[nxt]

                # finished hypotheses: candidates in the top nb that hit eos / the length limit
                just_done = hits & top_mask
                norm = top_lp / ((cur + 1 - P) ** lp)
                if bool(finished.all()) and es is True or not improvable:
                    norm = norm + NEG
                norm = norm + (~just_done).float() * NEG
                merged_scores = torch.cat([scores, norm])
                best = merged_scores.topk(nb).indices
                seqs = torch.cat([seqs, cand])[best]
                scores = merged_scores[best]
                finished = torch.cat([finished, just_done])[best]

                cur += 1
                # HF's early-stop heuristic (see module docstring)
                length = (max_length - P) if (es == "never" and lp > 0) else (cur - P)
                best_running = running_scores[0] / (length ** lp)
                worst_done = scores.min() if bool(finished.all()) else torch.tensor(NEG)
                improvable = improvable and bool(best_running > worst_done)
                if not improvable or (bool(finished.all()) and es is True) or bool(hits.all()):
                    break
                for t in (*cache.k, *cache.v):  # reorder the cache rows to follow their beams
                    t.copy_(t.index_select(0, beam_src))
                hidden = native.forward(model, running[:, cur - 1:cur], cache)
    finally:
        model.train(was_training)

    out, out_scores = [], []
    for i in range(cfg.num_return_sequences):
        ids = [t for t in seqs[i, P:].tolist() if t >= 0]
        if ids and ids[-1] in eos and not keep_eos:
            ids.pop()  # a hypothesis ends at its first eos
        out.append(ids)
        out_scores.append(float(scores[i]))
    return (out, out_scores) if return_scores else out
