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

One mechanism, two callers: `beam_core` runs that step on B rows x num_beams beams at once (each row, a
prompt or a source sentence, keeps its own hypotheses and length limit; a row that is done leaves the
batch, so the model works only on the rows still searching). The model-specific parts come in as two callables, `step` (token ids ->
next-token logits, advancing the model's caches) and `reorder` (cache rows follow their beams).
`beam_search` below is the decoder-only caller (one prompt, B = 1); engine/seq2seq.py's beam path is the
encoder-decoder one (B source sentences, decoder prefix [bos]).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..model.kv_cache import KVCache
from . import native
from .config import GenerationConfig, stop_ids
from .sampling import apply_processors, needs_history

NEG = -1.0e9


def beam_core(step: Callable[[torch.Tensor], torch.Tensor], reorder: Callable[[torch.Tensor], None],
              prefix: torch.Tensor, limits: Sequence[int], cfg: GenerationConfig, eos: Sequence[int],
              num_return: int = 1) -> tuple[list[list[list[int]]], list[list[float]]]:
    """Beam search on B = len(limits) rows x nb = cfg.num_beams beams; flat row b*nb + j is beam j of row b.

    prefix (P,): the tokens every beam starts from (a prompt; [bos] for a decoder); limits[b]: the total
    length (prefix included) row b may reach. step(ids (A*nb, t)) -> logits (A*nb, V) at the last position,
    for the A rows still searching: called first with the whole prefix, then with one new token per beam
    (it advances the caches). reorder(src): flat row r of the caches becomes flat row src[r] (beams change
    parents); src is shorter than the batch when rows are done (their beams leave; e.g. KVCache.select_rows).
    Returns, per row, the best `num_return` hypotheses (token ids after the prefix, eos kept as emitted)
    and their length-normalised scores, best first. Uses num_beams, length_penalty, early_stopping and
    the processors of sampling.py (repetition penalty, no_repeat_ngram_size, logit bias)."""
    nb, lp, es = cfg.num_beams, cfg.length_penalty, cfg.early_stopping
    B, P, device = len(limits), prefix.numel(), prefix.device
    L = max(limits)
    eos_t = torch.tensor(sorted(eos), dtype=torch.long, device=device)
    keep = max(2, 1 + len(eos)) * nb  # candidates per row: enough live ones even if every eos is among them
    top_mask = torch.arange(keep, device=device) < nb  # (keep,) only the top nb candidates may finish
    limit = torch.tensor(list(limits), device=device)  # per row still searching
    # "never" bounds the best running beam at each row's max length: (L_b - P) ** lp in Python floats, as HF
    never = torch.tensor([float((n - P) ** lp) for n in limits], device=device) if es == "never" and lp > 0 else None

    # The search state holds the A rows still searching (act: their row numbers), in the model's batch order;
    # a row that is done writes its hypotheses to out_seqs/out_scores and leaves the batch (the caches drop
    # its beams through `reorder`), so finished rows cost no more model work.
    act = torch.arange(B, device=device)
    running = torch.full((B, nb, L), -1, dtype=torch.long, device=device)  # -1: slot not filled yet
    running[:, :, :P] = prefix
    running_scores = torch.full((B, nb), NEG, device=device)
    running_scores[:, 0] = 0.0  # the nb beams start identical: only the first one is live
    seqs = torch.full((B, nb, L), -1, dtype=torch.long, device=device)  # finished hypotheses
    scores = torch.full((B, nb), NEG, device=device)
    finished = torch.zeros(B, nb, dtype=torch.bool, device=device)  # which hypothesis slots are filled
    out_seqs, out_scores = seqs.clone(), scores.clone()

    cur, fed = P, 0  # tokens so far; tokens the model has seen (prefill first, then one per step)
    while cur < L:
        A = act.numel()
        rows = torch.arange(A, device=device)[:, None]  # (A, 1) for gathering per row
        logits = step(running[:, :, fed:cur].reshape(A * nb, cur - fed))  # (A*nb, V)
        fed = cur
        V = logits.shape[-1]
        logprobs = logits.float().log_softmax(-1)
        prev = running[:, :, :cur].reshape(A * nb, cur)
        logprobs = apply_processors(logprobs, cfg, prev if needs_history(cfg) else None, P)
        flat = (logprobs.view(A, nb, V) + running_scores[:, :, None]).view(A, nb * V)
        top_lp, top_idx = flat.topk(keep, dim=-1)  # (A, keep)
        src_beam, tok = top_idx // V, top_idx % V
        cand = running[rows, src_beam]  # (A, keep, L), a copy
        cand[:, :, cur] = tok
        hits = torch.isin(tok, eos_t) | (cur + 1 >= limit)[:, None]  # (A, keep) eos or the length limit

        # next running beams: the best nb candidates that did not finish
        live_lp = top_lp + hits.float() * NEG
        nxt = live_lp.topk(nb, dim=-1).indices  # (A, nb)
        running, running_scores = cand[rows, nxt], live_lp[rows, nxt]
        beam_src = src_beam[rows, nxt]  # (A, nb)

        # finished hypotheses: candidates in the top nb that hit eos / the length limit, merged into the
        # row's best nb so far
        just_done = hits & top_mask
        norm = top_lp / ((cur + 1 - P) ** lp) + (~just_done).float() * NEG
        merged = torch.cat([scores, norm], 1)  # (A, nb + keep)
        best = merged.topk(nb, dim=-1).indices
        seqs = torch.cat([seqs, cand], 1)[rows, best]
        scores = merged[rows, best]
        finished = torch.cat([finished, just_done], 1)[rows, best]

        cur += 1
        # HF's stopping rule per row (module docstring): can the best running beam still beat the worst
        # hypothesis? True: stop as soon as nb hypotheses exist; and stop when every candidate finished
        best_running = running_scores[:, 0] / (never if never is not None else (cur - P) ** lp)
        worst_done = torch.where(finished.all(-1), scores.min(-1).values, torch.full_like(best_running, NEG))
        done = ~(best_running > worst_done) | (finished.all(-1) & (es is True)) | hits.all(-1)
        parent = rows[:, 0] * nb  # each row's first beam in the model's batch
        if bool(done.any()):  # done rows hand in their hypotheses and leave the batch
            out_seqs[act[done]], out_scores[act[done]] = seqs[done], scores[done]
            if bool(done.all()):
                break
            k = (~done).nonzero().squeeze(1)
            act, running, running_scores, seqs, scores, finished, limit, beam_src, parent = (
                t[k] for t in (act, running, running_scores, seqs, scores, finished, limit, beam_src, parent))
            never = never[k] if never is not None else None
        # cache rows follow their beams (and drop the beams of done rows)
        reorder((parent[:, None] + beam_src).view(-1))
    # every row is done by now: at cur + 1 = L >= its limit, all its candidates hit the limit
    out = [[[t for t in out_seqs[b, i, P:].tolist() if t >= 0] for i in range(num_return)] for b in range(B)]
    return out, [[float(s) for s in out_scores[b, :num_return]] for b in range(B)]


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
    max_length = min(prompt.numel() + cfg.max_new_tokens, model.cfg.max_seq_len)
    eos = sorted(stop_ids(cfg, tokenizer))

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            cache = KVCache.for_model(model, batch_size=nb, max_len=max_length)

            def step(ids: torch.Tensor) -> torch.Tensor:  # the prompt prefill, then one token per beam
                return native.logits(model, native.forward(model, ids, cache)[:, -1])

            (out,), (out_scores,) = beam_core(step, cache.select_rows, prompt, [max_length], cfg, eos,
                                              cfg.num_return_sequences)
    finally:
        model.train(was_training)

    for ids in out:
        if ids and ids[-1] in eos and not keep_eos:
            ids.pop()  # a hypothesis ends at its first eos
    return (out, out_scores) if return_scores else out
