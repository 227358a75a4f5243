"""`Engine`: batched generation with continuous batching, streaming and cancellation.

`Engine` is the decode path: generate() / stream() / generate_text() (a batch of one), the REPL, the server,
RAG answers, tool calls (constrained requests), RL rollouts and generative evals all run here (design.md).
The package's two other decoders, beam search (beam.py) and speculative decoding (speculative.py), share its
KV cache, sampling code and native decode step (native.py).

Requests join and leave *between decode steps* (continuous batching, Yu et al. 2022 "Orca"), so a short
request never waits for a long one and a new request never waits for the batch to drain.

    submit(Request) ─▶ waiting queue ──step()──▶ admit: prefill the new prompts together (left padded),
                                                 copy their K/V into free rows of the batch cache
                                      ──step()──▶ decode: one forward of 1 token for every active row,
                                                 per-row sampling, stop checks, stream events
    handle: iterate events / text, result(), cancel()

KV layout. One cache of shape (max_batch, n_kv_head, max_len, head_dim) per layer (allocated as it fills:
rows and slots double on demand, `_reserve`). All rows
share the fill level `pos` (one forward writes slot `pos` of every row); row r's tokens occupy slots
[start[r], pos) and everything before start[r] is masked out, i.e. each row is left padded by start[r]
(kv_cache.py). Positions are per row (pos - start[r]), so a row's logits do not depend on its neighbours.
A joining prompt of length P is written at slots [pos - P, pos); if pos < P (or the cache is full) the
whole cache is shifted (`_rebase`) — rare, O(cache) copy. Active rows are kept contiguous at the front
(a finished row is replaced by the last one), so each forward runs on `cache[:n_active]`, a view.

Sampling goes through `sampling.sample_next` per row with the row's own config, generator (seeded
requests reproduce: sequence i of a request with seed s uses seed s + i) and history, so each request's
output equals what the plain loop of reference.py produces for it alone (tests/engine/test_engine.py). A
plain greedy batch (no processors, no constraint, no logprobs) takes one batched argmax.

Threading: `step()` may be called from any one thread at a time (a lock guards it). `start()` runs steps
in a background thread; without it, iterating a handle drives `step()` itself (the REPL), or the owner's
thread calls `step()` and reads each handle's `events` queue (the server, serve/backend.py).
"""
from __future__ import annotations

import codecs
import itertools
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from ..model.kv_cache import KVCache
from .constrained import apply_mask
from . import native
from .config import GenerationConfig, first_stop, partial_stop_len, stop_ids
from .sampling import needs_history, sample_next, token_logprobs


class Overloaded(RuntimeError):
    """`submit` refused a request: `max_waiting` requests are already queued (a server answers 429)."""


@dataclass
class Request:
    prompt_ids: Sequence[int]
    gen_cfg: GenerationConfig | None = None
    constraint: object | None = None  # a constrained.Constraint (JSON Schema / regex)
    request_id: str | None = None


@dataclass
class Completion:
    """One generated sequence. `text` never includes a stop string; `token_ids` exclude a stop token id
    (but include the token that completed a stop string). logprobs[i]: the model's log-probability of
    token_ids[i]; top_logprobs[i]: [(token_id, logprob), ...] when requested."""
    index: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    stop_token_id: int | None = None  # the stop id (or the constraint's end id) that ended it, if one did
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass
class Event:
    """A streaming event: new text (possibly empty) and token of sequence `index`; `finish_reason` is set on
    that sequence's last event."""
    index: int
    text: str
    token_id: int | None
    logprob: float | None = None
    finish_reason: str | None = None
    top_logprobs: list[tuple[int, float]] | None = None  # [(token_id, logprob), ...] when requested


class RequestHandle:
    """Returned by `Engine.submit`. Iterate for `Event`s, `texts()` for text pieces of sequence 0,
    `result()` / `results()` for the finished completions, `cancel()` to stop early."""

    def __init__(self, engine: "Engine", request: Request, n: int):
        self.engine, self.request = engine, request
        self.completions = [Completion(i) for i in range(n)]
        self.events: queue.Queue = queue.Queue()
        self.cancelled = False
        self._open = n  # sequences not finished yet
        self._done = threading.Event()

    def cancel(self) -> None:
        """Stop generating; the sequences finish with reason "cancelled" at the next step."""
        self.cancelled = True
        self.engine._wake()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                if self._done.is_set() and self.events.empty():
                    return
                if self.engine.running:
                    try:
                        ev = self.events.get(timeout=0.05)
                    except queue.Empty:
                        continue
                elif self.engine.has_work():
                    self.engine.step()
                    continue
                else:
                    raise RuntimeError("request is neither finished nor queued (engine stopped?)")
            if ev is None:
                return
            yield ev

    def texts(self, index: int = 0) -> Iterator[str]:
        for ev in self:
            if ev.index == index and ev.text:
                yield ev.text

    def results(self) -> list[Completion]:
        for _ in self:
            pass
        return self.completions

    def result(self) -> Completion:
        return self.results()[0]


class _Seq:
    """Per-row state of one sequence in the batch."""

    def __init__(self, handle: RequestHandle, index: int, prompt: torch.Tensor, cfg: GenerationConfig,
                 stop_ids: frozenset[int], device):
        self.handle, self.index, self.cfg, self.stop_ids = handle, index, cfg, stop_ids
        self.completion = handle.completions[index]
        self.P = prompt.numel()
        self.history = needs_history(cfg)
        self.tokens = None  # prompt + generated ids, kept only for the processors that read the history
        if self.history:
            self.tokens = torch.empty(self.P + cfg.max_new_tokens + 1, dtype=torch.long, device=device)
            self.tokens[:self.P] = prompt
        self.n = 0
        self.generator = None
        if cfg.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(cfg.seed + index)
        self.constraint = handle.request.constraint.begin() if handle.request.constraint is not None else None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held = ""
        self.stops = [s for s in cfg.stop_strings if s]
        self.plain_greedy = (cfg.temperature == 0 and not self.history and not cfg.logit_bias
                             and self.constraint is None and cfg.logprobs is None)


class Engine:
    """Continuous-batching generation over one model (see the module docstring)."""

    def __init__(self, model, tokenizer=None, max_batch_size: int = 8, max_len: int | None = None,
                 dtype: torch.dtype | None = None, max_waiting: int | None = None,
                 skip_special_tokens: bool = False):
        """max_waiting: `submit` raises `Overloaded` when that many requests are queued (None = no bound).
        skip_special_tokens: special tokens (tokenizer.special_tokens) add no text (they still count as
        tokens and appear in token_ids / events)."""
        self.model, self.tokenizer = model, tokenizer  # step() switches to eval mode and back
        self.max_waiting = max_waiting
        self.hidden_ids = frozenset(getattr(tokenizer, "special_tokens", {}).values()) if skip_special_tokens \
            else frozenset()
        self.device = next(model.parameters()).device
        self.max_batch_size = max_batch_size
        self.max_len = min(max_len or model.cfg.max_seq_len, model.cfg.max_seq_len)
        # storage grows on demand (`_reserve`), up to max_batch_size x max_len: a server configured for 32 rows
        # of a 32K-context model must not allocate gigabytes before its first request
        self.cache = KVCache.for_model(model, batch_size=1, max_len=min(self.max_len, 128), dtype=dtype)
        self.row_start = torch.zeros(max_batch_size, dtype=torch.long, device=self.device)  # first valid slot
        self.rows: list[_Seq] = []  # active rows, contiguous from 0
        self.last = torch.zeros(max_batch_size, dtype=torch.long, device=self.device)  # next input token
        self.waiting: deque[tuple[RequestHandle, Request]] = deque()
        self._lock, self._step_lock = threading.Lock(), threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._ids = itertools.count()

    # --- public API --------------------------------------------------------------------------------------
    def submit(self, request: Request | Sequence[int], gen_cfg: GenerationConfig | None = None,
               **kw) -> RequestHandle:
        """Queue a request (or prompt ids + config); returns its handle immediately."""
        if not isinstance(request, Request):
            request = Request(list(request), gen_cfg, **kw)
        cfg = request.gen_cfg = request.gen_cfg or GenerationConfig()
        P = len(request.prompt_ids)
        if P == 0:
            raise ValueError("generation needs at least one prompt token (e.g. a BOS token)")
        # a prompt that fills the window still gets the one token its last position predicts (not under a
        # constraint, which needs room to complete)
        if P > self.max_len or (P == self.max_len and request.constraint is not None):
            raise ValueError(f"prompt has {P} tokens but the engine's context window is {self.max_len}")
        if cfg.num_return_sequences > self.max_batch_size:
            raise ValueError(f"num_return_sequences={cfg.num_return_sequences} > max_batch_size")
        if cfg.num_beams > 1:
            raise ValueError("beam search runs outside the continuous batch: use engine.beam.beam_search")
        if [x for x in cfg.stop_strings if x] and self.tokenizer is None:
            raise ValueError("stop_strings need a tokenizer")
        request.request_id = request.request_id or f"req-{next(self._ids)}"
        handle = RequestHandle(self, request, cfg.num_return_sequences)
        with self._cv:
            if self.max_waiting is not None and len(self.waiting) >= self.max_waiting:
                raise Overloaded(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append((handle, request))
            self._cv.notify()
        return handle

    def generate(self, prompts: Sequence[Sequence[int]], gen_cfg: GenerationConfig | None = None,
                 **kw) -> list[list[Completion]]:
        """Batch convenience: submit every prompt, run to completion, return the completions per prompt."""
        handles = [self.submit(Request(list(p), gen_cfg, **kw)) for p in prompts]
        self.run_until_done()
        return [h.results() for h in handles]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def has_work(self) -> bool:
        return bool(self.rows or self.waiting)

    def run_until_done(self) -> None:
        while self.has_work():
            self.step()

    def start(self) -> "Engine":
        """Run `step()` in a daemon thread until `stop()`; handles then block on their event queues."""
        if not self.running:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="zerollm-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _loop(self) -> None:
        while not self._stop:
            with self._cv:
                while not self._stop and not self.has_work():
                    self._cv.wait()
            if not self._stop:
                self.step()

    # --- one iteration -----------------------------------------------------------------------------------
    def step(self) -> None:
        """Admit waiting requests (prefill), then decode one token for every active row."""
        with self._step_lock:
            was_training = self.model.training
            if was_training:  # (.eval() walks every module: ~1 ms per step on GPT-2, so only when needed)
                self.model.eval()
            try:
                with torch.inference_mode():
                    self._drop_cancelled()
                    self._admit()
                    if self.rows:
                        self._decode()
            finally:
                if was_training:
                    self.model.train()

    def _drop_cancelled(self) -> None:
        with self._lock:
            for item in [w for w in self.waiting if w[0].cancelled]:
                self.waiting.remove(item)
                for c in item[0].completions:
                    self._finish_completion(item[0], c, "cancelled")
        for r in [r for r, s in enumerate(self.rows) if s.handle.cancelled][::-1]:
            self._finish_row(r, "cancelled")

    def _admit(self) -> None:
        new: list[tuple[RequestHandle, Request]] = []
        with self._lock:
            free = self.max_batch_size - len(self.rows)
            while self.waiting and self.waiting[0][1].gen_cfg.num_return_sequences <= free:
                handle, req = self.waiting.popleft()
                free -= req.gen_cfg.num_return_sequences
                new.append((handle, req))
        if not new:
            return
        prompts = [torch.as_tensor(list(r.prompt_ids), dtype=torch.long, device=self.device) for _, r in new]
        Pmax = max(p.numel() for p in prompts)
        # batched prefill, left padded, in a temporary cache of exactly Pmax slots
        tmp = KVCache.for_model(self.model, batch_size=len(new), max_len=Pmax, dtype=self.cache.k[0].dtype)
        pad = torch.tensor([Pmax - p.numel() for p in prompts], device=self.device)
        idx = torch.stack([torch.nn.functional.pad(p, (Pmax - p.numel(), 0)) for p in prompts])  # (k, Pmax)
        positions = (torch.arange(Pmax, device=self.device)[None, :] - pad[:, None]).clamp(min=0)
        if (pad > 0).any():
            tmp.set_left_padding(pad)
        hidden = native.forward(self.model, idx, tmp, positions)  # (k, Pmax, D)
        logits = native.logits(self.model, hidden[:, -1])  # (k, V)
        # make room: every new prompt must fit in slots [pos - Pmax, pos), and one decode slot must remain
        pos = self.cache.pos if self.rows else 0
        self._reserve(len(self.rows) + sum(r.gen_cfg.num_return_sequences for _, r in new), max(pos, Pmax) + 1)
        if pos < Pmax:
            self._rebase(Pmax)
        self.cache.pos = max(self.cache.pos, Pmax) if self.rows else Pmax
        pos = self.cache.pos
        for j, (handle, req) in enumerate(new):
            ends = stop_ids(req.gen_cfg, self.tokenizer)
            if req.constraint is not None:
                ends = frozenset(i for i in ends if i != req.constraint.eos_id)
            for i in range(req.gen_cfg.num_return_sequences):
                r = len(self.rows)
                for layer in range(len(self.cache.k)):
                    self.cache.k[layer][r, :, pos - Pmax:pos] = tmp.k[layer][j]
                    self.cache.v[layer][r, :, pos - Pmax:pos] = tmp.v[layer][j]
                self.row_start[r] = pos - prompts[j].numel()
                seq = _Seq(handle, i, prompts[j], req.gen_cfg, ends, self.device)
                self.rows.append(seq)
                if req.gen_cfg.max_new_tokens <= 0:
                    self._finish_row(r, "length")
                    continue
                self._sample_and_emit([r], logits[j:j + 1].expand(1, -1))

    def _reserve(self, rows: int, length: int) -> None:
        """Grow the cache storage to at least `rows` rows and `length` slots, keeping its contents; sizes
        double (capped at max_batch_size / max_len), so growing costs O(final size) copies in all."""
        k0 = self.cache.k[0]
        have_rows, have_len = k0.shape[0], k0.shape[2]
        if rows <= have_rows and length <= have_len:
            return
        grown = KVCache.for_model(self.model, batch_size=min(self.max_batch_size, max(rows, 2 * have_rows)),
                                  max_len=min(self.max_len, max(length, 2 * have_len)), dtype=k0.dtype)
        for old, new in zip((*self.cache.k, *self.cache.v), (*grown.k, *grown.v)):
            new[:have_rows, :, :have_len] = old
        grown.pos = self.cache.pos
        self.cache = grown

    def _rebase(self, new_pos: int) -> None:
        """Shift every active row's slots so that the fill level becomes new_pos (left or right)."""
        n, pos = len(self.rows), self.cache.pos
        d = new_pos - pos
        if d == 0 or n == 0:
            self.cache.pos = new_pos
            return
        lo = int(self.row_start[:n].min())
        if lo + d < 0 or new_pos > self.max_len:
            raise RuntimeError("KV cache rebase out of range")
        for t in (*self.cache.k, *self.cache.v):
            t[:n, :, lo + d:pos + d] = t[:n, :, lo:pos].clone()
        self.row_start[:n] += d
        self.cache.pos = new_pos

    def _view(self, n: int) -> KVCache:
        """The cache of the n active rows (a view of the first n rows of storage)."""
        padded = int(self.row_start[:n].max()) > 0
        if not padded and n == self.cache.k[0].shape[0]:
            return self.cache  # every stored row is active and none is left padded: the cache itself
        view = KVCache.__new__(KVCache)
        view.k = [t[:n] for t in self.cache.k]
        view.v = [t[:n] for t in self.cache.v]
        capacity = self.cache.k[0].shape[2]  # slots allocated so far (<= max_len)
        view.batch_size, view.max_len, view.pos = n, capacity, self.cache.pos
        if not padded:  # no row is left padded: plain causal attention, no mask
            view.valid = None
        else:
            slots = torch.arange(capacity, device=self.device)[None, :]
            view.valid = slots >= self.row_start[:n, None]
        return view

    def _decode(self) -> None:
        if self.cache.pos >= self.max_len:  # full: drop the common left padding, or end the oldest rows
            lo = int(self.row_start[:len(self.rows)].min())
            if lo > 0:
                self._rebase(self.cache.pos - lo)
            else:
                for r in [r for r in range(len(self.rows)) if int(self.row_start[r]) == 0][::-1]:
                    self._finish_row(r, "length")
                if not self.rows:
                    return
                self._rebase(self.cache.pos - int(self.row_start[:len(self.rows)].min()))
        n = len(self.rows)
        self._reserve(n, self.cache.pos + 1)
        view = self._view(n)
        # per-row positions; with no left padding they are the shared fill level (the model's default)
        positions = None if view.valid is None else (self.cache.pos - self.row_start[:n]).view(n, 1)
        hidden = native.forward(self.model, self.last[:n].view(n, 1), view, positions)  # (n, 1, D)
        self.cache.pos = view.pos
        logits = native.logits(self.model, hidden[:, -1])  # (n, V)
        self._sample_and_emit(list(range(n)), logits)

    # --- sampling, stop checks and streaming -------------------------------------------------------------
    def _sample_and_emit(self, rows: list[int], logits: torch.Tensor) -> None:
        seqs = [self.rows[r] for r in rows]
        if all(s.plain_greedy for s in seqs):
            chosen = logits.argmax(dim=-1).tolist()
            lps = [None] * len(rows)
        else:
            chosen, lps = [], []
            for k, s in enumerate(seqs):
                row = logits[k:k + 1]
                if s.constraint is not None:  # the row's own room (its slots [start, pos)), not the shared pos:
                    # rebasing frees the slots before the oldest row's start, so only this row's length counts
                    budget = min(s.cfg.max_new_tokens - s.n,
                                 self.max_len - (self.cache.pos - int(self.row_start[rows[k]])))
                    row = apply_mask(row, s.constraint.mask(budget, row.shape[-1]))
                prev = s.tokens[None, :s.P + s.n] if s.history else None
                tok = sample_next(row, s.generator, s.cfg, prev, s.P)
                chosen.append(int(tok))
                lps.append(token_logprobs(logits[k:k + 1], tok, s.cfg.logprobs) if s.cfg.logprobs is not None
                           else None)
        finished = []
        for k, (r, s, tok) in enumerate(zip(rows, seqs, chosen)):
            reason = self._accept(s, tok, lps[k])
            self.last[r] = tok
            if reason is not None:
                finished.append((r, reason))
        for r, reason in sorted(finished, reverse=True):
            self._finish_row(r, reason)

    def _accept(self, s: _Seq, tok: int, lp) -> str | None:
        """Record token `tok` for sequence s, stream its text; return a finish reason or None."""
        if tok in s.stop_ids or (s.constraint is not None and tok == s.constraint.c.eos_id):
            s.completion.stop_token_id = tok
            return "stop"
        c = s.completion
        c.token_ids.append(tok)
        if s.history:
            s.tokens[s.P + s.n] = tok
        s.n += 1
        logprob, top = None, None
        if lp is not None:
            logprob = float(lp[0])
            c.logprobs.append(logprob)
            if lp[1] is not None:
                top = list(zip(lp[2][0].tolist(), lp[1][0].tolist()))
                c.top_logprobs.append(top)
        if s.constraint is not None:
            s.constraint.advance(tok)
        text, reason = "", None
        if self.tokenizer is not None and tok not in self.hidden_ids:
            s.held += s.decoder.decode(self.tokenizer.token_bytes(tok))
            cut = first_stop(s.held, s.stops) if s.stops else None
            if cut is not None:
                text, s.held, reason = s.held[:cut], "", "stop"
                s.decoder.reset()
            else:
                keep = partial_stop_len(s.held, s.stops) if s.stops else 0
                text, s.held = s.held[:len(s.held) - keep], s.held[len(s.held) - keep:]
        if reason is None:
            if s.n >= s.cfg.max_new_tokens:
                reason = "length"
            elif s.constraint is not None and s.constraint.done:
                reason = "stop"
        c.text += text
        s.handle.events.put(Event(s.index, text, tok, logprob, top_logprobs=top))
        return reason

    def _finish_row(self, r: int, reason: str) -> None:
        s = self.rows[r]
        if self.tokenizer is not None:
            tail = s.held + s.decoder.decode(b"", final=True)
            cut = first_stop(tail, s.stops) if s.stops else None
            if cut is not None:
                tail, reason = tail[:cut], "stop"
            if tail:
                s.completion.text += tail
                s.handle.events.put(Event(s.index, tail, None))
        last = len(self.rows) - 1
        if r != last:  # keep rows contiguous: move the last row into slot r
            for t in (*self.cache.k, *self.cache.v):
                t[r] = t[last]
            self.row_start[r], self.last[r] = self.row_start[last], self.last[last]
            self.rows[r] = self.rows[last]
        self.rows.pop()
        self._finish_completion(s.handle, s.completion, reason)

    def _finish_completion(self, handle: RequestHandle, c: Completion, reason: str) -> None:
        if c.finish_reason is not None:
            return
        c.finish_reason = reason
        handle.events.put(Event(c.index, "", None, None, reason))
        handle._open -= 1
        if handle._open == 0:
            handle._done.set()
            handle.events.put(None)
