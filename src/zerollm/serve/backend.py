"""The server's one door to the model: every generation, scoring and embedding request goes through here.

    HTTP handlers ──submit(GenRequest, sink)──▶ waiting list ──▶ worker thread (owns the model)
                 ──run(job)──────────────────▶ job queue   ──▶     │
                                                                   ▼
        loop: run queued jobs (scoring, embeddings, constrained JSON) ─▶ admit waiting requests into the
              running batch ─▶ one batched decode step for every running row ─▶ send each row's events

This is a small continuous-batching loop written for the server until the engine's batched `Engine`
(engine/engine.py) lands; swapping to it is a change to this file only (the API layer sees `submit`, `run`,
`score`, `embed`). Constrained decoding (JSON Schema, regex) runs inside the batch: a request may carry an
`engine.constrained` Constraint and its row's logits are masked to the tokens that keep the match
completable within its token budget, so structured output and tool calls batch with everything else.

Continuous batching over one shared `KVCache`: the rows share the slot counter `pos`; row b's tokens occupy
slots [start_b, pos) and the slots before start_b are marked invalid (the cache's left-padding mask), with
explicit per-row `positions`, so each row sees exactly its own tokens from position 0. A new request joins a
running batch between two decode steps: its prompt is prefilled into a side cache so that it *ends* at the
shared `pos` (it needs P <= pos), then its cache rows are concatenated onto the batch. Finished or cancelled
rows are dropped from the batch; when the slots run out, every row is shifted left by the smallest start.

Events sent to a request's `sink` (called on the worker thread; the API layer forwards them to its event
loop): `Delta(text, tokens)` as text becomes final (UTF-8 complete, not a possible stop-string prefix) and
`Done(finish_reason, n_tokens, stop_id)` once. A `cancel()`ed handle stops at the next step.
"""
from __future__ import annotations

import codecs
import concurrent.futures
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from zerollm.engine.generate import GenerationConfig, _first_stop, _partial_stop_len
from zerollm.engine.sampling import needs_history, sample_next
from zerollm.model.kv_cache import KVCache


class Overloaded(Exception):
    """Too many requests are waiting (the API answers 429)."""


@dataclass
class TokenInfo:
    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)  # (id, logprob), best first


@dataclass
class Delta:
    text: str
    tokens: list[TokenInfo]


@dataclass
class Done:
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    n_tokens: int
    stop_id: int | None = None  # the stop token id that ended generation, if any
    error: str | None = None


@dataclass
class GenRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop_ids: list[int] = field(default_factory=list)
    stop_strings: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None = off; k = the chosen token's logprob and the k best alternatives
    constraint: object | None = None  # an engine.constrained Constraint (regex / JSON Schema) the text must match
    presence_penalty: float = 0.0  # OpenAI's penalties over the generated tokens (engine/sampling.py)
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None


class Handle:
    """What `submit` returns: cancel() stops the request at the next decode step."""

    _ids = itertools.count()

    def __init__(self, req: GenRequest, sink: Callable[[object], None]):
        self.req, self.sink, self.id = req, sink, next(Handle._ids)
        self.cancelled = False
        self.submitted = time.perf_counter()

    def cancel(self) -> None:
        self.cancelled = True


class _Text:
    """Incremental detokenizer with stop strings held back (the same rules as engine.generate.TextStream)."""

    def __init__(self, tokenizer, stop_strings: list[str]):
        self.tok, self.stops = tokenizer, [s for s in stop_strings if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.stopped = False  # a stop string was found (the text after it is dropped)

    def feed(self, token_id: int | None) -> tuple[str, bool]:
        """(text that is now final, stopped?). token_id None flushes the end of the stream."""
        if token_id is None:
            self.held += self.decoder.decode(b"", final=True)
        else:
            self.held += self.decoder.decode(self.tok.token_bytes(token_id))
        cut = _first_stop(self.held, self.stops) if self.stops else None
        if cut is not None:
            out, self.held, self.stopped = self.held[:cut], "", True
            return out, True
        keep = 0 if token_id is None else (_partial_stop_len(self.held, self.stops) if self.stops else 0)
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out, False


class _Row:
    """One running request inside the batch."""

    def __init__(self, handle: Handle, tokenizer, start: int, device):
        self.handle, self.req = handle, handle.req
        self.start = start  # first cache slot of this row
        self.next_pos = len(self.req.prompt_ids)  # position of the token fed next
        self.last = -1  # last sampled token (fed at the next step)
        self.n = 0
        self.text = _Text(tokenizer, self.req.stop_strings)
        self.stop_ids = frozenset(self.req.stop_ids)
        self.cfg = GenerationConfig(max_new_tokens=max(self.req.max_tokens, 0), temperature=self.req.temperature,
                                    top_p=self.req.top_p, top_k=self.req.top_k or None, stop_token_ids=[],
                                    presence_penalty=self.req.presence_penalty,
                                    frequency_penalty=self.req.frequency_penalty, logit_bias=self.req.logit_bias)
        # the tokens seen so far, for the penalties (None when the request has none)
        self.history = list(self.req.prompt_ids) if needs_history(self.cfg) else None
        self.generator = None
        if self.req.seed is not None and self.req.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(int(self.req.seed))
        self.cstate = self.req.constraint.begin() if self.req.constraint is not None else None
        self.done = False


def _token_infos(logits: torch.Tensor, chosen: list[int], ks: list[int | None]) -> list[TokenInfo | None]:
    """Per-row logprob of the chosen token plus top-k alternatives; None where logprobs were not asked."""
    out: list[TokenInfo | None] = [None] * len(chosen)
    rows = [i for i, k in enumerate(ks) if k is not None]
    if not rows:
        return out
    lp = torch.log_softmax(logits[rows].float(), -1)  # (R, V)
    kmax = max(max(ks[i] for i in rows), 1)
    top_v, top_i = lp.topk(min(kmax, lp.shape[-1]), -1)
    picked = lp.gather(1, torch.tensor([[chosen[i]] for i in rows], device=lp.device)).squeeze(1).tolist()
    top_v, top_i = top_v.tolist(), top_i.tolist()
    for j, i in enumerate(rows):
        out[i] = TokenInfo(chosen[i], picked[j], list(zip(top_i[j][:ks[i]], top_v[j][:ks[i]])))
    return out


class Backend:
    """A model + tokenizer served by one worker thread (see the module docstring)."""

    def __init__(self, model, tokenizer, model_id: str = "zerollm", max_batch: int = 32, max_waiting: int = 512):
        self.model, self.tokenizer, self.model_id = model.eval(), tokenizer, model_id
        self.ctx = model.cfg.max_seq_len
        self.device = next(model.parameters()).device
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.created = int(time.time())
        self.special_ids = frozenset(tokenizer.special_tokens.values())  # never shown as text
        self._waiting: deque[Handle] = deque()
        self._jobs: deque[tuple[Callable[[], object], concurrent.futures.Future]] = deque()
        self._rows: list[_Row] = []
        self._cache: KVCache | None = None
        self._wake = threading.Condition()
        self._stop = False
        self.finished: deque[tuple[int, str, int]] = deque(maxlen=256)  # (handle id, finish reason, tokens)
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name="zerollm-serve-backend", daemon=True)
        self._thread.start()

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "auto", **kwargs) -> "Backend":
        from zerollm.api import load

        model, tok = load(model_dir, device=device)
        return cls(model, tok, model_id=kwargs.pop("model_id", None) or _model_id(model_dir), **kwargs)

    # ---- the interface used by the API layer ------------------------------------------------------------

    def submit(self, req: GenRequest, sink: Callable[[object], None]) -> Handle:
        if len(req.prompt_ids) == 0:
            raise ValueError("the prompt is empty")
        if len(req.prompt_ids) > self.ctx:
            raise ValueError(f"prompt has {len(req.prompt_ids)} tokens, over the context length {self.ctx}")
        handle = Handle(req, sink)
        with self._wake:
            if len(self._waiting) >= self.max_waiting:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(handle)
            self._wake.notify()
        return handle

    def run(self, fn: Callable[[], object]) -> concurrent.futures.Future:
        """Run fn() on the worker thread between two decode steps (it owns the model there)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._wake:
            if len(self._jobs) >= self.max_waiting:
                raise Overloaded(f"{len(self._jobs)} jobs are already waiting")
            self._jobs.append((fn, fut))
            self._wake.notify()
        return fut

    def score(self, ids: list[int], top: int = 0) -> list[TokenInfo | None]:
        """Logprob of every token given the ones before it (the first has none); runs on the worker."""
        with torch.inference_mode():
            x = torch.tensor([ids], dtype=torch.long, device=self.device)
            logits = self.model.logits(self.model(x, return_hidden=True)[0, :-1])  # (T-1, V)
        infos = _token_infos(logits, ids[1:], [top] * (len(ids) - 1))
        return [None] + infos

    def embed(self, ids: list[int]) -> list[float]:
        """Mean-pooled, L2-normalised final hidden states (until rag/embed.py provides an embedding model)."""
        with torch.inference_mode():
            x = torch.tensor([ids[: self.ctx]], dtype=torch.long, device=self.device)
            h = self.model(x, return_hidden=True)[0].float().mean(0)  # (D,)
            return torch.nn.functional.normalize(h, dim=0).tolist()

    def stats(self) -> dict:
        return {"running": len(self._rows), "waiting": len(self._waiting), "jobs": len(self._jobs),
                "steps": self.steps}

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=5)

    # ---- the worker ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._stop or self._jobs or self._waiting or self._rows):
                    self._wake.wait()
                if self._stop:
                    break
                jobs = list(self._jobs)
                self._jobs.clear()
            for fn, fut in jobs:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:  # handed to the awaiting request
                        fut.set_exception(e)
            try:
                self._admit()
                if self._rows:
                    self._step()
            except Exception as e:  # a bug, not a client mistake: fail the running rows, keep serving
                for row in self._rows:
                    self._finish(row, "error", error=f"{type(e).__name__}: {e}")
                self._rows, self._cache = [], None
        for row in self._rows:
            self._finish(row, "cancelled")

    def _admit(self) -> None:
        """Move waiting requests into the batch (prefill them so they end at the shared `pos`)."""
        with self._wake:
            while self._waiting and self._waiting[0].cancelled:
                h = self._waiting.popleft()
                h.sink(Done("cancelled", 0))
            if not self._waiting or len(self._rows) >= self.max_batch:
                return
            room = self.max_batch - len(self._rows)
            if not self._rows:
                group = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            else:
                pos = self._cache.pos
                group = [h for h in self._waiting if len(h.req.prompt_ids) <= pos and not h.cancelled][:room]
                for h in group:
                    self._waiting.remove(h)
        if not group:
            return
        end = max(len(h.req.prompt_ids) for h in group) if not self._rows else self._cache.pos
        self._prefill(group, end)

    def _prefill(self, group: list[Handle], end: int) -> None:
        lens = [len(h.req.prompt_ids) for h in group]
        T = max(lens)
        side = KVCache.for_model(self.model, batch_size=len(group), max_len=self.ctx)
        side.pos = end - T
        side.valid = torch.stack([torch.arange(self.ctx, device=self.device) >= end - n for n in lens])  # (G, L)
        idx = torch.zeros(len(group), T, dtype=torch.long, device=self.device)
        positions = torch.zeros(len(group), T, dtype=torch.long, device=self.device)
        for b, h in enumerate(group):
            n = lens[b]
            idx[b, T - n:] = torch.tensor(h.req.prompt_ids, device=self.device)
            positions[b, T - n:] = torch.arange(n, device=self.device)
        with torch.inference_mode():
            hidden = self.model(idx, cache=side, positions=positions, return_hidden=True)  # (G, T, D)
            logits = self.model.logits(hidden[:, -1])  # (G, V)
        rows = [_Row(h, self.tokenizer, end - n, self.device) for h, n in zip(group, lens)]
        if self._rows:
            c = self._cache
            c.k = [torch.cat([a, b]) for a, b in zip(c.k, side.k)]
            c.v = [torch.cat([a, b]) for a, b in zip(c.v, side.v)]
            c.valid = torch.cat([c.valid, side.valid])
            c.batch_size += len(group)
        else:
            self._cache = side
        self._rows += rows
        self._sample(rows, logits)

    def _step(self) -> None:
        """Feed every row's last token, sample the next ones."""
        c = self._cache
        if c.pos >= c.max_len:  # out of slots: drop the columns no row uses any more
            shift = min(r.start for r in self._rows)
            if shift == 0:
                for row in self._rows:
                    self._finish(row, "length")
                self._drop_finished()
                return
            for layer in range(len(c.k)):
                c.k[layer][:, :, :c.pos - shift] = c.k[layer][:, :, shift:c.pos].clone()
                c.v[layer][:, :, :c.pos - shift] = c.v[layer][:, :, shift:c.pos].clone()
            c.valid[:, :c.max_len - shift] = c.valid[:, shift:].clone()
            c.valid[:, c.max_len - shift:] = True
            c.pos -= shift
            for row in self._rows:
                row.start -= shift
        idx = torch.tensor([[r.last] for r in self._rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[r.next_pos] for r in self._rows], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            hidden = self.model(idx, cache=c, positions=positions, return_hidden=True)  # (B, 1, D)
            logits = self.model.logits(hidden[:, -1])  # (B, V)
        for row in self._rows:
            row.next_pos += 1
        self.steps += 1
        self._sample(self._rows, logits)

    def _sample(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Pick each row's next token, send its events, drop the rows that are done."""
        with torch.inference_mode():
            for i, row in enumerate(rows):  # constrained rows: only tokens that keep the match completable
                if row.cstate is not None:
                    allowed = row.cstate.mask(max(row.req.max_tokens - row.n, 1), logits.shape[-1])
                    logits[i] = logits[i].masked_fill(~allowed.to(logits.device), float("-inf"))
            chosen = logits.argmax(-1)  # (B,) greedy rows without biases or penalties use this
            for i, row in enumerate(rows):
                if row.cfg.temperature > 0 or row.history is not None or row.cfg.logit_bias:
                    prev = None if row.history is None else torch.tensor([row.history], device=logits.device)
                    chosen[i] = sample_next(logits[i:i + 1], row.generator, row.cfg, prev,
                                            len(row.req.prompt_ids))[0]
            chosen = chosen.tolist()  # the one host sync per step
            infos = _token_infos(logits, chosen, [r.req.logprobs for r in rows])
        for row, tok, info in zip(rows, chosen, infos):
            if row.handle.cancelled:
                self._finish(row, "cancelled")
            elif row.req.max_tokens <= 0:
                self._finish(row, "length")
            elif tok in row.stop_ids or (row.cstate is not None and tok == row.req.constraint.eos_id):
                self._finish(row, "stop", stop_id=tok)
            else:
                row.n += 1
                row.last = tok
                if row.history is not None:
                    row.history.append(tok)
                text, stopped = row.text.feed(tok) if tok not in self.special_ids else ("", False)
                row.handle.sink(Delta(text, [info or TokenInfo(tok)]))
                if row.cstate is not None:
                    row.cstate.advance(tok)
                if stopped or (row.cstate is not None and row.cstate.done):
                    self._finish(row, "stop")
                elif row.n >= row.req.max_tokens or row.next_pos + 1 > self.ctx:
                    self._finish(row, "length")
        self._drop_finished()

    def _finish(self, row: _Row, reason: str, stop_id: int | None = None, error: str | None = None) -> None:
        if row.done:
            return
        row.done = True
        if reason in ("length", "stop") and not row.text.stopped:
            text, _ = row.text.feed(None)
            if text:
                row.handle.sink(Delta(text, []))
        self.finished.append((row.handle.id, reason, row.n))
        row.handle.sink(Done(reason, row.n, stop_id, error))

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if not r.done]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache = [], None
            return
        c, sel = self._cache, torch.tensor(keep, device=self.device)
        c.k = [t.index_select(0, sel) for t in c.k]
        c.v = [t.index_select(0, sel) for t in c.v]
        c.valid = c.valid.index_select(0, sel)
        c.batch_size = len(keep)
        self._rows = [self._rows[i] for i in keep]


def _model_id(model_dir: str | Path) -> str:
    p = Path(model_dir).resolve()
    if p.name.startswith("step-") and p.parent.name == "checkpoints":
        return p.parent.parent.name
    return p.name
