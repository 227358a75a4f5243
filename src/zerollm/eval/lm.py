"""Scoring text with a model: the three requests every evaluation is made of.

    loglikelihood(context, continuation) → (Σ_t log p(c_t | context, c_<t), is_greedy)
    loglikelihood_rolling(text)          → Σ_t log p(x_t | x_<t) over the whole text (windows of the context)
    generate(prompt, until, ...)         → text, through engine.Engine (batched, continuous batching)

Tokenization follows lm-evaluation-harness (`HFLM._encode_pair`) so scores match it token for token:
trailing spaces of the context move to the continuation; the continuation's ids are those of
encode(context + continuation) after the ids of encode(context); an empty context is the model's prefix
token (eos, else bos). A request longer than the context window keeps its last `max_len + 1` tokens
(truncated from the left) and is counted in `Scorer.truncated`.

Batching: requests that share a context (the choices of one multiple-choice item) are packed into one row,
the context once and then each continuation, with an attention mask that lets a continuation see the
context and itself only, and positions that restart after the context: each continuation's logits are those
of context + continuation alone, the context is computed once (`_forward`). Rows are sorted by length,
longest first (so a batch pads little and the first batch shows the peak memory), right padded to the
batch's longest, and each batch is one forward pass; right padding never changes a real position's logits
under a causal mask. Only the scored positions go through the output projection (`model.logits(hidden)`):
for a 50k-word vocabulary that projection is a third of the model's multiply-adds.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig


class Scorer:
    """Log-likelihoods and generations of one model + tokenizer (see the module docstring)."""

    def __init__(self, model, tokenizer, batch_size: int = 16, max_len: int | None = None,
                 progress: Callable[[int], None] | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size = max(1, batch_size)
        self.max_len = max_len or model.cfg.max_seq_len
        self.device = next(model.parameters()).device
        prefix = tokenizer.eos_id if tokenizer.eos_id is not None else getattr(tokenizer, "bos_id", None)
        self.prefix_id = prefix if prefix is not None else 0
        self.truncated = 0  # requests cut from the left to fit the context window
        self.progress = progress
        self._engine: Engine | None = None

    # ---- tokenization, as lm-eval ------------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        if not context:
            return [self.prefix_id], self.tokenizer.encode(continuation)
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context)
        return ctx, whole[len(ctx):]

    # ---- log-likelihoods ---------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in requests])

    @torch.inference_mode()
    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(Σ log p(continuation | context), whether greedy decoding would produce the continuation) for each
        (context ids, continuation ids); see the module docstring for batching, sharing and truncation."""
        units: dict[tuple, list] = {}  # context ids → [(request index, continuation ids), ...]
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                raise ValueError("a log-likelihood request needs a non-empty continuation")
            full = list(ctx) + list(cont)
            if len(full) > self.max_len + 1:
                self.truncated += 1
                full = full[-(self.max_len + 1):]
            k = min(len(cont), len(full) - 1)
            units.setdefault(tuple(full[:-k]), []).append((i, full[-k:]))
        rows, plans = [], []  # one packed row per shared context: the context, then each continuation but its
        for ctx, conts in units.items():  # last token; plan: (request, positions predicting it, its tokens)
            c = len(ctx)
            row, segs, plan = list(ctx), [0] * c, []
            for i, cont in conts:
                if plan and len(row) + len(cont) - 1 > 2 * self.max_len:  # keep rows short: start another
                    rows.append((row, segs))
                    plans.append(plan)
                    row, segs, plan = list(ctx), [0] * c, []
                at = len(row)
                plan.append((i, [c - 1] + list(range(at, at + len(cont) - 1)), cont))
                segs += [len(plan)] * (len(cont) - 1)
                row += cont[:-1]
            rows.append((row, segs))
            plans.append(plan)
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        order = sorted(range(len(rows)), key=lambda j: -len(rows[j][0]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            hidden = self._forward([rows[j] for j in idx])
            sel_r, sel_t, targets = [], [], []
            for rr, j in enumerate(idx):
                for _, pos, cont in plans[j]:
                    sel_r += [rr] * len(pos)
                    sel_t += pos
                    targets += cont
            tok_lp, greedy = self._score(hidden[sel_r, sel_t], torch.tensor(targets, device=hidden.device))
            at = 0
            for j in idx:
                for i, pos, _ in plans[j]:
                    out[i] = (math.fsum(tok_lp[at:at + len(pos)]), all(greedy[at:at + len(pos)]))
                    at += len(pos)
            if self.progress:
                self.progress(sum(len(plans[j]) for j in idx))
        return out  # type: ignore[return-value]

    def _score(self, h: torch.Tensor, tgt: torch.Tensor, chunk: int = 256) -> tuple[list[float], list[bool]]:
        """log p(target) = logit[target] − logsumexp(logits) and whether target is the argmax, for hidden states
        h (N, D), projecting `chunk` rows at a time (a (N, 50k) logit matrix would be the run's peak memory)."""
        lps, greedy = [], []
        for a in range(0, len(tgt), chunk):
            logits = self.model.logits(h[a:a + chunk]).float()
            t = tgt[a:a + chunk]
            lps += (logits.gather(1, t[:, None])[:, 0] - torch.logsumexp(logits, -1)).tolist()
            greedy += (logits.argmax(-1) == t).tolist()
        return lps, greedy

    def _forward(self, rows: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        """Hidden states (B, T, D) of right-padded packed rows. Rows holding one continuation are plain causal
        sequences (the model's fused causal path); rows that share a context across several continuations
        get a mask where a continuation's tokens see the context and themselves, never another continuation,
        and positions that restart after the context, so each continuation is scored exactly as if alone."""
        T = len(rows[0][0])
        x = torch.zeros(len(rows), T, dtype=torch.long)
        for r, (ids, _) in enumerate(rows):
            x[r, :len(ids)] = torch.tensor(ids)
        x = x.to(self.device)
        if all(max(segs, default=0) <= 1 for _, segs in rows):
            return self.model(x, return_hidden=True)
        seg = torch.full((len(rows), T), -1, dtype=torch.long)
        for r, (_, segs) in enumerate(rows):
            seg[r, :len(segs)] = torch.tensor(segs)
        seg = seg.to(self.device)
        ctx_len = (seg == 0).sum(1, keepdim=True)  # (B, 1)
        idx = torch.arange(T, device=self.device).expand(len(rows), T)
        # position of a continuation token = ctx_len + its offset inside its own segment
        first = torch.where(seg[:, 1:] != seg[:, :-1], idx[:, 1:], torch.zeros_like(idx[:, 1:]))
        run_start = torch.cat([torch.zeros_like(idx[:, :1]), first], 1).cummax(-1).values
        positions = torch.where(seg == 0, idx, ctx_len + idx - run_start).clamp(max=self.model.cfg.max_seq_len - 1)
        causal = torch.ones(T, T, dtype=torch.bool, device=self.device).tril()
        see = (seg.unsqueeze(-1) == seg.unsqueeze(-2)) | (seg.unsqueeze(-2) == 0)  # same segment, or the context
        mask = (see & causal).unsqueeze(1) | torch.eye(T, dtype=torch.bool, device=self.device)  # pads: self
        h, rope = self.model.embed(x, 0, positions)
        for block in self.model.blocks:
            h = block(h, rope, None, mask)
        return self.model.norm_f(h)

    def rolling_windows(self, ids: list[int]) -> list[tuple[list[int], list[int]]]:
        """lm-eval's rolling windows: every token is scored once, each with as much context as fits.
        Window predicting ids[s:e] reads [prefix] + ids, positions [e - max_len, e); returned as (context,
        continuation) pairs for loglikelihood_tokens."""
        full, L, pairs = [self.prefix_id] + list(ids), self.max_len, []
        for s in range(0, len(ids), L):
            e = min(s + L, len(ids))
            a = max(0, e - L)
            pairs.append((full[a:s + 1], ids[s:e]))  # input full[a:e]; continuation = ids[s:e]
        return pairs

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Σ log p over each whole text (nats)."""
        pairs, owner = [], []
        for j, text in enumerate(texts):
            for p in self.rolling_windows(self.tokenizer.encode(text)):
                pairs.append(p)
                owner.append(j)
        before = self.truncated
        scores = self.loglikelihood_tokens(pairs)
        self.truncated = before  # rolling windows fit by construction
        totals = [0.0] * len(texts)
        for j, (ll, _) in zip(owner, scores):
            totals[j] += ll
        return totals

    # ---- generation --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], until: Sequence[str] = (), max_new_tokens: int = 256,
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> list[list[str]]:
        """`n` completions per prompt through one Engine (prompts batched); stop at any string of `until`
        (cut before it) or an end id. At most half the context is generated; a longer prompt is cut from
        the left (counted in `truncated`)."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: it cannot generate")
        if self._engine is None:
            self._engine = Engine(self.model, self.tokenizer, max_batch_size=max(self.batch_size, n))
        max_new_tokens = min(max_new_tokens, self.max_len // 2)  # a small context keeps room for the prompt
        room = self.max_len - max_new_tokens
        ids = []
        for p in prompts:
            t = self.tokenizer.encode(p) or [self.prefix_id]
            if len(t) > room:
                self.truncated += 1
                t = t[-room:]
            ids.append(t)
        stops = [i for i in (self.tokenizer.eos_id,) if i is not None]
        outs = []
        for b in range(0, len(ids), max(1, self.batch_size // n)):
            cfgs = [GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                     stop_strings=list(until), stop_token_ids=stops, num_return_sequences=n,
                                     seed=seed + (b + j) * n if temperature > 0 else None)
                    for j in range(len(ids[b:b + max(1, self.batch_size // n)]))]
            handles = [self._engine.submit(t, c) for t, c in zip(ids[b:b + len(cfgs)], cfgs)]
            self._engine.run_until_done()
            outs += [[c.text for c in h.results()] for h in handles]
            if self.progress:
                self.progress(len(cfgs))
        return outs


def bits_per_byte(total_loglik: float, n_bytes: int) -> float:
    """Tokenizer-independent: bpb = −Σ log p / ln 2 / (UTF-8 bytes of the text), so models with different
    tokenizers compare (the same quantity as objectives/lm.py's val_bpb: loss / ln 2 / bytes per token)."""
    return -total_loglik / math.log(2) / max(1, n_bytes)


__all__ = ["Scorer", "bits_per_byte"]
