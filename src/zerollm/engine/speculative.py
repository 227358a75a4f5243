"""Speculative decoding with a small draft model (Leviathan et al. 2023; Chen et al. 2023).

A cheap draft model proposes k tokens one by one; the target model scores all of them in ONE forward of
k+1 tokens (a batch-1 decode step is memory-bound, so k+1 tokens cost about as much as 1). Tokens are then
accepted left to right:

    greedy:  accept x_i while x_i == argmax p_i; the first mismatch is replaced by argmax p_i
             -> output identical to the target alone
    sampled: accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); on the first rejection draw from
             norm(max(0, p_i - q_i)) and stop -> every emitted token is distributed exactly as the target's
             p (Leviathan et al. 2023, Theorem 1)
    all k accepted: one bonus token from p_{k+1}

p and q are the *processed* distributions (temperature, top-k, top-p, min-p) of target and draft. Both
keep their own KV cache; rejected positions are dropped with `KVCache.crop`. Processors that depend on the
history (repetition/presence/frequency penalties, n-gram bans) are not supported here.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model.kv_cache import KVCache
from . import native
from .config import GenerationConfig, stop_ids
from .sampling import needs_history, next_token_probs


def _last_logits(model, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed ids (1, T) through model with its cache; logits (1, V) of the last position."""
    return native.logits(model, native.forward(model, ids, cache)[:, -1])


def speculative_accept(p: torch.Tensor, q: torch.Tensor, draft: list[int],
                       generator: torch.Generator | None = None) -> list[int]:
    """Accept/reject the k draft tokens given target probs p (k+1, V) and draft probs q (k, V); returns the
    emitted tokens (the accepted prefix plus one corrected or bonus token)."""
    out = []
    for i, x in enumerate(draft):
        r = torch.rand((), generator=generator, device=p.device)
        if float(r) * float(q[i, x]) <= float(p[i, x]):  # accept with prob min(1, p/q)
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        residual = residual / residual.sum() if float(residual.sum()) > 0 else p[i]
        out.append(int(torch.multinomial(residual, 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(p[len(draft)], 1, generator=generator)))
    return out


def speculative_generate(target, draft, prompt_ids: Sequence[int], gen_cfg: GenerationConfig | None = None,
                         num_draft: int = 4, tokenizer=None, stats: dict | None = None) -> list[int]:
    """New token ids from `target`, proposed by `draft` (same vocabulary). `stats` (optional dict) receives
    proposed / accepted counts and target forwards."""
    cfg = gen_cfg or GenerationConfig()
    if needs_history(cfg):
        raise ValueError("speculative decoding does not support history-dependent penalties")
    device = next(target.parameters()).device
    stop = stop_ids(cfg, tokenizer)
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.seed is not None else None
    prompt = torch.as_tensor(list(prompt_ids), dtype=torch.long, device=device).view(1, -1)
    P = prompt.shape[1]
    limit = min(target.cfg.max_seq_len, draft.cfg.max_seq_len)
    max_new = min(cfg.max_new_tokens, limit - P)
    st = stats if stats is not None else {}
    st.update(proposed=0, accepted=0, target_forwards=0)
    out: list[int] = []
    greedy = cfg.temperature == 0
    with torch.inference_mode():
        tc = KVCache.for_model(target, 1, max_len=limit)
        dc = KVCache.for_model(draft, 1, max_len=limit)
        if P > 1:  # prefill all but the last prompt token, which is fed with the first proposal
            native.forward(target, prompt[:, :-1], tc)
            native.forward(draft, prompt[:, :-1], dc)
        pend_t, pend_d = [int(prompt[0, -1])], [int(prompt[0, -1])]  # fed to each model next round
        while len(out) < max_new:
            k = max(0, min(num_draft, max_new - len(out) - 1, limit - tc.pos - 2))
            # draft proposes k tokens, one forward each
            d_start = dc.pos
            d_logits = _last_logits(draft, torch.tensor([pend_d], device=device), dc)
            proposal, qs = [], []
            for i in range(k):
                if greedy:  # argmax of the raw logits: no (V,) distribution is built
                    x = int(d_logits[0].argmax())
                else:
                    q = next_token_probs(d_logits, cfg)[0]
                    x = int(torch.multinomial(q, 1, generator=gen))
                    qs.append(q)
                proposal.append(x)
                if i < k - 1:
                    d_logits = _last_logits(draft, torch.tensor([[x]], device=device), dc)
            # the target scores the pending token and all k proposals in ONE forward: p_1 .. p_{k+1}
            t_start = tc.pos
            hid = native.forward(target, torch.tensor([pend_t + proposal], device=device), tc)
            st["target_forwards"] += 1
            t_logits = native.logits(target, hid[0])  # (k+1, V)
            if greedy:  # accept the longest prefix the target's argmax agrees with, then its own token
                best = t_logits.argmax(-1).tolist()  # one host sync for all k+1 positions
                n = 0
                while n < k and best[n] == proposal[n]:
                    n += 1
                emitted = proposal[:n] + [best[n]]
            else:
                p = next_token_probs(t_logits, cfg)
                emitted = speculative_accept(p, torch.stack(qs) if qs else p[:0], proposal, gen)
            n_acc = len(emitted) - 1
            st["proposed"] += k
            st["accepted"] += n_acc
            done = False
            for tok in emitted:  # commit; a stop id or the length limit ends generation
                if tok in stop or len(out) >= max_new:
                    done = True
                    break
                out.append(tok)
            if done or len(out) >= max_new:
                break
            # keep the pending token + accepted proposals in each cache; feed the rest next round
            tc.crop(t_start + len(pend_t) + n_acc)
            seen_d = min(n_acc, max(k - 1, 0))
            dc.crop(d_start + len(pend_d) + seen_d)
            pend_t = [emitted[-1]]
            pend_d = emitted[seen_d:]
    return out
