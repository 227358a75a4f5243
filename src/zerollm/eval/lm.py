"""Scoring text with a model: the three requests every evaluation is made of.

    loglikelihood(context, continuation) → (Σ_t log p(c_t | context, c_<t), is_greedy)
    loglikelihood_rolling(text)          → Σ_t log p(x_t | x_<t) over the whole text (windows of the context)
    generate(prompt, until, ...)         → text, through engine.Engine (batched, continuous batching)

Tokenization follows lm-evaluation-harness (`HFLM._encode_pair`) so scores match it token for token:
trailing spaces of the context move to the continuation; the continuation's ids are those of
encode(context + continuation) after the ids of encode(context); an empty context is the model's prefix
token (eos, else bos). A request longer than the context window keeps its last `max_len + 1` tokens
(truncated from the left) and is counted in `Scorer.truncated`.

Batching: requests are sorted by length, longest first (so a batch pads little and the first batch shows
the peak memory), right padded to the batch's longest, and each batch is one forward pass. Right padding
never changes a real position's logits under a causal mask. Only the continuation positions go through the
output projection (`model.logits(hidden)`): for a 50k-word vocabulary that projection is most of the work.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

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
        (context ids, continuation ids); see the module docstring for batching and truncation."""
        rows = []  # (input ids, number of continuation tokens at its end, targets)
        for ctx, cont in pairs:
            if not cont:
                raise ValueError("a log-likelihood request needs a non-empty continuation")
            full = list(ctx) + list(cont)
            if len(full) > self.max_len + 1:
                self.truncated += 1
                full = full[-(self.max_len + 1):]
            rows.append((full[:-1], min(len(cont), len(full) - 1), full[1:]))
        out: list[tuple[float, bool] | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            T = len(rows[idx[0]][0])
            x = torch.zeros(len(idx), T, dtype=torch.long)
            for r, i in enumerate(idx):
                x[r, :len(rows[i][0])] = torch.tensor(rows[i][0])
            hidden = self.model(x.to(self.device), return_hidden=True)
            # gather the continuation positions of every row, one output projection for all of them
            sel_r, sel_t, targets = [], [], []
            for r, i in enumerate(idx):
                inp, k, tgt = rows[i]
                L = len(inp)
                sel_r += [r] * k
                sel_t += range(L - k, L)
                targets += tgt[L - k:]
            logits = self.model.logits(hidden[sel_r, sel_t]).float()
            logp = torch.log_softmax(logits, dim=-1)
            tgt = torch.tensor(targets, device=logp.device)
            tok_lp = logp.gather(1, tgt[:, None])[:, 0].tolist()
            greedy = (logp.argmax(-1) == tgt).tolist()
            at = 0
            for r, i in enumerate(idx):
                k = rows[i][1]
                out[i] = (math.fsum(tok_lp[at:at + k]), all(greedy[at:at + k]))
                at += k
            if self.progress:
                self.progress(len(idx))
        return out  # type: ignore[return-value]

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
