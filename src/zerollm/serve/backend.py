"""The server's one door to the model: every generation, scoring and embedding request goes through here.

    HTTP handlers ──submit(GenRequest, sink)──▶ engine.Engine (waiting queue) ──┐
                 ──run(job)──────────────────▶ job queue ──────────────────────┤
                                                                               ▼
        worker thread (owns the model), loop: run queued jobs (scoring, embeddings) ─▶ `Engine.step()`
        (admit waiting requests into the batch, one batched decode step) ─▶ forward each handle's engine
        `Event`s to its sink as `Delta` / `Done`

Generation is `engine.Engine`'s continuous batching (the one engine of design.md: the REPL, evals and the
server share its batching, sampling, stop handling and constrained decoding). This file only translates:
a `GenRequest` becomes an `engine.Request` (prompt ids, a `GenerationConfig`, an optional
`engine.constrained` Constraint, so structured output and tool calls batch with everything else), and the
worker thread, not `Engine.start()`, calls `step()`, so one thread runs every model call.

Events sent to a request's `sink` (called on the worker thread; the API layer forwards them to its event
loop): `Delta(text, tokens)` as text becomes final (UTF-8 complete, not a possible stop-string prefix;
special tokens add no text) and `Done(finish_reason, n_tokens, stop_id)` once. A `cancel()`ed handle stops
at the next step.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from zerollm.engine.engine import Engine, Event, Overloaded, Request, RequestHandle
from zerollm.engine.generate import GenerationConfig
from zerollm.loading import load_for_use
from zerollm.runtime import ThreadPicker, setup_runtime


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
        self.submitted = time.perf_counter()
        self.engine_handle: RequestHandle | None = None  # set by Backend.submit

    @property
    def cancelled(self) -> bool:
        return self.engine_handle is not None and self.engine_handle.cancelled

    def cancel(self) -> None:
        if self.engine_handle is not None:
            self.engine_handle.cancel()


def _engine_request(req: GenRequest) -> Request:
    """The engine's form of a server request (GenerationConfig validates the sampling options)."""
    cfg = GenerationConfig(max_new_tokens=max(req.max_tokens, 0), temperature=req.temperature, top_p=req.top_p,
                           top_k=req.top_k or None, stop_token_ids=list(req.stop_ids),
                           stop_strings=list(req.stop_strings),
                           seed=int(req.seed) if req.seed is not None and req.temperature > 0 else None,
                           presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                           logit_bias=req.logit_bias, logprobs=req.logprobs)
    return Request(list(req.prompt_ids), cfg, constraint=req.constraint)


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

    def __init__(self, model, tokenizer, model_id: str = "zerollm", max_batch: int = 32, max_waiting: int = 512,
                 chat_template: str | None = None, stop_ids=None):
        self.model, self.tokenizer, self.model_id = model.eval(), tokenizer, model_id
        self.chat_template = chat_template  # the model's own (loading.Loaded); None = zerollm's ChatML
        # ids that end a completion: the model's own (loading.Loaded.stop_ids), else the tokenizer's eos
        self.stop_ids = list(stop_ids) if stop_ids is not None else \
            ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])
        self.ctx = model.cfg.max_seq_len
        self.device = next(model.parameters()).device
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.created = int(time.time())
        self.engine = self._new_engine()
        self._live: dict[int, Handle] = {}  # submitted, not finished: their engine events are forwarded
        self._jobs: deque[tuple[Callable[[], object], concurrent.futures.Future]] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self.finished: deque[tuple[int, str, int]] = deque(maxlen=256)  # (handle id, finish reason, tokens)
        self.steps = 0
        # no --threads: decode steps measure 1 thread vs all cores (per token) and keep the faster,
        # re-checking now and then (runtime.ThreadPicker), as training does
        self.threads = ThreadPicker.for_run(self.device)
        self._thread = threading.Thread(target=self._loop, name="zerollm-serve-backend", daemon=True)
        self._thread.start()

    def _new_engine(self) -> Engine:
        # up to max_batch rows of the full context; the engine allocates its KV cache as it fills
        return Engine(self.model, self.tokenizer, max_batch_size=self.max_batch, max_len=self.ctx,
                      max_waiting=self.max_waiting, skip_special_tokens=True)

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "auto", **kwargs) -> "Backend":

        loaded = load_for_use(model_dir, setup_runtime(device))
        return cls(loaded.model, loaded.tokenizer, model_id=kwargs.pop("model_id", None) or _model_id(model_dir),
                   chat_template=loaded.chat_template, stop_ids=loaded.stop_ids, **kwargs)

    # ---- the interface used by the API layer ------------------------------------------------------------

    def submit(self, req: GenRequest, sink: Callable[[object], None]) -> Handle:
        """Queue a generation; raises ValueError for a bad request, Overloaded when too many are waiting."""
        handle = Handle(req, sink)
        ereq = _engine_request(req)
        with self._wake:  # submitted and registered together, so the worker forwards every event
            handle.engine_handle = self.engine.submit(ereq)
            self._live[handle.id] = handle
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
        return {"running": len(self.engine.rows), "waiting": len(self.engine.waiting), "jobs": len(self._jobs),
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
                while not (self._stop or self._jobs or self.engine.has_work()):
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
                if self.engine.has_work():
                    self._step()
                self._forward_events()
            except Exception as e:  # a bug, not a client mistake: fail the live requests, keep serving
                self._fail_all(f"{type(e).__name__}: {e}")
        for h in self._take_live():
            self._done(h, "cancelled")

    def _step(self) -> None:
        """One engine step; with a thread picker, timed per running sequence (batches vary in size)."""
        rows = max(1, len(self.engine.rows))
        if self.threads is not None:
            self.threads.before_step()
        t0 = time.perf_counter()
        self.engine.step()
        if self.threads is not None:
            self.threads.after_step((time.perf_counter() - t0) / rows)
        self.steps += 1

    def _forward_events(self) -> None:
        """Turn the engine events queued since the last step into sink calls."""
        with self._wake:
            live = list(self._live.values())
        for h in live:
            events = h.engine_handle.events
            while True:
                try:
                    ev = events.get_nowait()
                except queue.Empty:
                    break
                if ev is None:  # the engine's end-of-request marker (after the finish event)
                    with self._wake:
                        self._live.pop(h.id, None)
                    break
                self._send(h, ev)

    def _send(self, h: Handle, ev: Event) -> None:
        if ev.finish_reason is not None:
            self._done(h, ev.finish_reason)
        elif ev.token_id is not None:
            top = list(ev.top_logprobs or []) if h.req.logprobs is not None else []
            h.sink(Delta(ev.text, [TokenInfo(ev.token_id, ev.logprob, top)]))
        elif ev.text:  # the held-back tail, flushed when the sequence ends
            h.sink(Delta(ev.text, []))

    def _done(self, h: Handle, reason: str, error: str | None = None) -> None:
        c = h.engine_handle.completions[0]
        n, stop_id = len(c.token_ids), c.stop_token_id
        self.finished.append((h.id, reason, n))
        h.sink(Done(reason, n, stop_id if reason == "stop" else None, error))

    def _take_live(self) -> list[Handle]:
        with self._wake:
            live, self._live = list(self._live.values()), {}
        return live

    def _fail_all(self, error: str) -> None:
        """After an exception inside a step the engine's batch state is unknown: fail every live request
        and continue with a fresh engine."""
        with self._wake:
            live, self._live = list(self._live.values()), {}
            self.engine = self._new_engine()
        for h in live:
            self._done(h, "error", error)


def _model_id(model_dir: str | Path) -> str:
    p = Path(model_dir).resolve()
    if p.name.startswith("step-") and p.parent.name == "checkpoints":
        return p.parent.parent.name
    return p.name
