"""The OpenAI-compatible HTTP API (interop.md §3) and the chat page, as a FastAPI app.

    create_app(model_dir | Backend, api_key=None) -> FastAPI
      GET  /v1/models, /v1/models/{id}     the one served model
      POST /v1/chat/completions            ChatML-rendered messages; tools; response_format json_schema;
                                           logprobs; n; seed; stop; stream (+ stream_options.include_usage)
      POST /v1/completions                 str / list[str] / token-id prompts; echo; logprobs (lm-eval ready)
      POST /v1/embeddings                  float or base64 vectors
      GET  /health                         {"status": "ok", running/waiting counts}
      GET  /                               the chat page (static/index.html, no build step)

Every model call goes through serve/backend.py (one worker thread with continuous batching), so requests
from many clients share decode steps. Handlers submit requests and await their events; a client that
disconnects (stream closed, or polled while a non-streamed answer is pending) cancels its generation.

Tool calls: with tool_choice "required" or a named function the call is decoded under the tools' JSON
schemas straight away; with "auto" the model generates text and, if it emits `<|tool_call|>`, the call is
decoded under the schemas from there (so `arguments` is always valid JSON). `response_format` json_schema /
json_object is decoded the same way: valid JSON by construction.
"""
from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from zerollm.chat.format import render, stop_token_ids
from zerollm.chat.tools import SchemaError, Tool
from zerollm.engine.constrained import JSONSchemaConstraint

from . import errors
from .backend import Backend, Delta, Done, GenRequest, Overloaded, TokenInfo
from .errors import APIError
from .limits import BodyLimit, ConstraintCache, Limits, check_request, reduce_seed
from .protocol import ChatRequest, CompletionRequest, EmbeddingRequest, as_dict

STATIC = Path(__file__).parent / "static"
TOOL_CALL, TOOL_CALL_END = "<|tool_call|>", "<|/tool_call|>"


class _Guard:
    """Request-body size limit and API key check, as plain ASGI middleware. (Starlette's
    `@app.middleware("http")` passes every response chunk through an extra memory stream: a cost per streamed
    token, ~15 % of the server's throughput with 8 streaming clients.)"""

    def __init__(self, app, max_body_bytes: int, api_key: str | None):
        self.app, self.max_body_bytes, self.api_key = app, max_body_bytes, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])  # lower-case byte names
            size = headers.get(b"content-length", b"").decode("latin-1")
            if size.isdigit() and int(size) > self.max_body_bytes:
                response = errors.error_response(413, f"request body of {size} bytes is over the "
                                                      f"{self.max_body_bytes} limit")
                return await response(scope, receive, send)
            if self.api_key and scope["path"].startswith("/v1") \
                    and headers.get(b"authorization", b"").decode("latin-1") != f"Bearer {self.api_key}":
                response = errors.error_response(401, "missing or invalid API key (send Authorization: Bearer "
                                                      "<key>)", code="invalid_api_key",
                                                 headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(model: str | Path | Backend, api_key: str | None = None, *, max_body_bytes: int = 4 << 20,
               model_id: str | None = None, tools: list | None = None, limits: Limits | None = None) -> FastAPI:
    """The app serving `model` (a checkpoint/run dir, or a ready `Backend`). With `api_key`, every /v1 call
    needs `Authorization: Bearer <api_key>`. `tools` (chat.tools.Tool objects; default none): executed by the
    server for chat requests that bring no tools of their own (serve/server_tools.py). `limits`: what one
    request may ask (serve/limits.py)."""
    limits = limits or Limits(max_body_bytes=max_body_bytes)
    backend = model if isinstance(model, Backend) else Backend.from_dir(model, model_id=model_id)
    app = FastAPI(title="zerollm", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.backend = backend
    errors.install(app)
    api = _API(backend, limits)

    app.add_middleware(BodyLimit, max_body_bytes=limits.max_body_bytes)  # inner: counts chunked bodies too
    app.add_middleware(_Guard, max_body_bytes=limits.max_body_bytes, api_key=api_key)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": backend.model_id, **backend.stats()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [api.model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model_info(model_id: str):
        api.check_model(model_id)
        return api.model_card()

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        if tools and not body.tools and body.tool_choice != "none":
            from .server_tools import chat_with_server_tools

            return await chat_with_server_tools(api, body, request, tools)
        return await api.chat(body, request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await api.completions(body, request)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        return await api.embeddings(body)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _ClientGone(Exception):
    """The client disconnected while a call was being decoded."""


def _sse(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


class _API:
    """Request handling shared by the endpoints (validation, rendering, collecting backend events)."""

    def __init__(self, backend: Backend, limits: Limits):
        self.b, self.limits = backend, limits
        self.tok = backend.tokenizer
        self.constraints = ConstraintCache(limits.cache_bytes, limits.compile_timeout_s)

    # ---- helpers ---------------------------------------------------------------------------------------
    def model_card(self) -> dict:
        return {"id": self.b.model_id, "object": "model", "created": self.b.created, "owned_by": "zerollm",
                "max_model_len": self.b.ctx}

    def check_model(self, name: str) -> None:
        if name != self.b.model_id:
            raise APIError(404, f"model {name!r} does not exist; this server serves {self.b.model_id!r}",
                           param="model", code="model_not_found")

    def token_str(self, i: int) -> str:
        return self.tok.token_bytes(i).decode("utf-8", errors="replace")

    def budget(self, n_prompt: int, asked: int | None, default: int | None = None) -> int:
        if n_prompt >= self.b.ctx:
            raise APIError(400, f"the prompt has {n_prompt} tokens but the model's context length is {self.b.ctx}",
                           param="messages", code="context_length_exceeded", type="exceed_context_size_error")
        room = self.b.ctx - n_prompt
        want = asked if asked is not None else (default if default is not None else room)
        return min(want, room)

    def submit(self, reqs: list[GenRequest], queue: asyncio.Queue) -> list:
        loop = asyncio.get_running_loop()
        handles = []

        def sink_for(i):
            def sink(ev):
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, (i, ev))
                except RuntimeError:  # the event loop is gone (server shutting down)
                    pass
            return sink
        try:
            for i, r in enumerate(reqs):
                handles.append(self.b.submit(r, sink_for(i)))
        except Overloaded as e:
            for h in handles:
                h.cancel()
            raise APIError(429, f"server overloaded: {e}; retry later") from None
        except ValueError as e:
            for h in handles:
                h.cancel()
            raise APIError(400, str(e)) from None
        return handles

    async def events(self, request: Request, handles: list, queue: asyncio.Queue) -> AsyncIterator[tuple[int, object]]:
        """(choice index, Delta | Done) until every request is done; cancels them all if the client leaves."""
        remaining = len(handles)
        try:
            while remaining:
                try:
                    i, ev = queue.get_nowait()  # the common case while tokens stream: no timer task
                except asyncio.QueueEmpty:
                    try:
                        i, ev = await asyncio.wait_for(queue.get(), 0.25)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        continue
                if isinstance(ev, Done):
                    remaining -= 1
                yield i, ev
        finally:
            for h in handles:
                h.cancel()

    async def run(self, fn):
        try:
            return await asyncio.wrap_future(self.b.run(fn))
        except Overloaded as e:
            raise APIError(429, f"server overloaded: {e}; retry later") from None

    def gen_requests(self, body, prompt_ids: list[int], max_tokens: int, stop_ids: list[int],
                     logprobs: int | None, n: int | None = None, j: int = 0) -> list[GenRequest]:
        temp = 1.0 if body.temperature is None else body.temperature
        stops = [] if body.ignore_eos else list(stop_ids)
        stops += list(body.stop_token_ids or [])
        bias = self.logit_bias(body.logit_bias)
        return [GenRequest(prompt_ids, max_tokens, temperature=temp, top_p=body.top_p or 1.0, top_k=body.top_k,
                           seed=reduce_seed(body.seed, k), stop_ids=stops,
                           stop_strings=body.stop_list(), logprobs=logprobs,
                           presence_penalty=body.presence_penalty or 0.0,
                           frequency_penalty=body.frequency_penalty or 0.0, logit_bias=bias)
                for k in range(j, j + (n or body.n))]

    def logit_bias(self, raw: dict[str, float] | None) -> dict[int, float] | None:
        """OpenAI's logit_bias {"token id": bias}: ids must be integers of this vocabulary, biases in [-100, 100]."""
        if not raw:
            return None
        out = {}
        for key, value in raw.items():
            try:
                tid = int(key)
            except ValueError:
                raise APIError(400, f"logit_bias key {key!r} is not a token id", param="logit_bias") from None
            if not 0 <= tid < self.tok.vocab_size:
                raise APIError(400, f"logit_bias token id {tid} is outside the vocabulary (0..{self.tok.vocab_size - 1})",
                               param="logit_bias")
            if not -100 <= value <= 100:
                raise APIError(400, f"logit_bias value {value} for token {tid} is outside [-100, 100]",
                               param="logit_bias")
            out[tid] = float(value)
        return out

    def chat_logprobs(self, infos: list[TokenInfo]) -> dict:
        def entry(i, lp):
            b = self.tok.token_bytes(i)
            return {"token": b.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(b)}
        return {"content": [{**entry(t.id, t.logprob), "top_logprobs": [entry(i, lp) for i, lp in t.top]}
                            for t in infos]}

    # ---- chat ------------------------------------------------------------------------------------------
    def render_chat(self, body: ChatRequest, tools: list[dict] | None) -> list[int]:
        try:
            return render([as_dict(m) for m in body.messages], self.tok, template=self.b.chat_template,
                          add_generation_prompt=True, tools=tools).ids
        except (ValueError, KeyError, TypeError) as e:
            raise APIError(400, f"cannot render messages: {e}", param="messages") from None

    def tool_plan(self, body: ChatRequest) -> tuple[list[dict] | None, list | None, bool]:
        """(tool specs for the prompt, chat.tools.Tool objects the call may use, call forced?)."""
        if not body.tools and (body.tool_choice == "required" or isinstance(body.tool_choice, dict)):
            raise APIError(400, "tool_choice asks for a tool call but no tools were given", param="tool_choice")
        if not body.tools or body.tool_choice == "none":
            return ([t.model_dump(by_alias=True) for t in body.tools] if body.tools else None), None, False

        specs = [t.model_dump(by_alias=True) for t in body.tools]
        try:
            tools = [Tool.from_openai(s) for s in specs]
        except SchemaError as e:
            raise APIError(400, str(e), param="tools") from None
        if TOOL_CALL not in self.tok.special_tokens:
            raise APIError(400, "this model's tokenizer has no <|tool_call|> token: tools are not supported",
                           param="tools")
        choice = body.tool_choice or "auto"
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            chosen = [t for t in tools if t.name == name]
            if not chosen:
                raise APIError(400, f"tool_choice names function {name!r}, which is not in tools", param="tool_choice")
            return specs, chosen, True
        return specs, tools, choice == "required"

    async def constraint(self, schema: dict, param: str):
        """A compiled JSON Schema constraint (engine/constrained.py): size-checked, compiled off the event
        loop with a time limit, cached by bytes (serve/limits.py)."""
        return await self.constraints.get(json.dumps(schema, sort_keys=True),
                                          lambda timeout: JSONSchemaConstraint(schema, self.tok, timeout=timeout), param)

    async def tool_phase(self, request: Request, ids: list[int], tools: list, body: ChatRequest, j: int,
                         budget: int) -> tuple[dict | None, str, int]:
        """Decode one call after `ids` + <|tool_call|>, constrained to {"name": <a tool>, "arguments": <its
        schema>}; (OpenAI tool call or None if the budget ran out, raw JSON text, tokens used)."""
        alts = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                 "required": ["name", "arguments"]} for t in tools]
        c = await self.constraint(alts[0] if len(alts) == 1 else {"anyOf": alts}, "tools")
        ids = ids + [self.tok.special_tokens[TOOL_CALL]]
        req = self.gen_requests(body, ids, self.budget(len(ids), budget), [], None, n=1, j=j)[0]
        req.constraint = c
        queue: asyncio.Queue = asyncio.Queue()
        handles = self.submit([req], queue)
        text, n, reason = "", 0, None
        async for _, ev in self.events(request, handles, queue):
            if isinstance(ev, Delta):
                text += ev.text
            else:
                reason, n = ev.finish_reason, ev.n_tokens + 1
        if reason is None:
            raise _ClientGone()
        if reason == "error":
            raise APIError(500, "tool call generation failed")
        try:
            obj = json.loads(text)
            fn = {"name": obj["name"], "arguments": json.dumps(obj["arguments"], ensure_ascii=False)}
        except (ValueError, KeyError, TypeError):
            return None, text, n
        return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": fn}, text, n

    async def chat(self, body: ChatRequest, request: Request):
        self.check_model(body.model)
        specs, tools, forced = self.tool_plan(body)
        prompt = self.render_chat(body, specs)
        asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        budget = self.budget(len(prompt), asked)
        check_request(self.limits, [len(prompt)], body.n, [budget])
        want_lp = (body.top_logprobs or 0) if body.logprobs else None
        structured = body.response_format is not None and body.response_format.type != "text"
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": created, "model": self.b.model_id}
        if forced:  # tool_choice required / a named function: decode the call(s) straight away
            try:
                results = await asyncio.gather(*[self.tool_phase(request, prompt, tools, body, j, budget)
                                                 for j in range(body.n)])
            except _ClientGone:
                return JSONResponse({}, status_code=499)
            choices, n_out = [], 0
            for j, (call, text, n) in enumerate(results):
                msg = {"role": "assistant", "content": None, "tool_calls": [call]} if call else \
                    {"role": "assistant", "content": text}
                choices.append({"index": j, "message": msg, "logprobs": None,
                                "finish_reason": "tool_calls" if call else "length"})
                n_out += n
            usage = {"prompt_tokens": len(prompt), "completion_tokens": n_out, "total_tokens": len(prompt) + n_out}
            if body.stream:
                return StreamingResponse(self.replay_chat(head, choices, body, usage), media_type="text/event-stream")
            return {**head, "choices": choices, "usage": usage}
        stops = stop_token_ids(self.tok, self.b.stop_ids)
        if tools:
            stops.append(self.tok.special_tokens[TOOL_CALL])
        reqs = self.gen_requests(body, prompt, budget, stops, want_lp)
        if structured:  # json_schema / json_object: valid JSON by construction, streamed like any text
            fmt = body.response_format
            schema = fmt.json_schema.schema_ if fmt.type == "json_schema" and fmt.json_schema else {"type": "object"}
            c = await self.constraint(schema, "response_format")
            for r in reqs:
                r.constraint, r.stop_ids = c, []
        queue: asyncio.Queue = asyncio.Queue()
        handles = self.submit(reqs, queue)
        if body.stream:
            return StreamingResponse(self.stream_chat(request, handles, queue, head, prompt, tools, body, budget),
                                     media_type="text/event-stream")
        texts, ids, infos = [""] * body.n, [[] for _ in range(body.n)], [[] for _ in range(body.n)]
        choices, n_out = [None] * body.n, 0
        async for j, ev in self.events(request, handles, queue):
            if isinstance(ev, Delta):
                texts[j] += ev.text
                ids[j] += [t.id for t in ev.tokens]
                infos[j] += ev.tokens
                continue
            if ev.finish_reason == "error":
                raise APIError(500, f"generation failed: {ev.error}")
            n_out += ev.n_tokens
            msg, reason = {"role": "assistant", "content": texts[j]}, ev.finish_reason
            if tools and ev.stop_id == self.tok.special_tokens[TOOL_CALL]:
                try:
                    call, text, n = await self.tool_phase(request, prompt + ids[j], tools, body, j, budget - len(ids[j]))
                except _ClientGone:
                    return JSONResponse({}, status_code=499)
                msg, reason = {"role": "assistant", "content": texts[j] or None, "tool_calls": [call]}, "tool_calls"
                if call is None:
                    msg, reason = {"role": "assistant", "content": texts[j] + text}, "length"
                n_out += n
            lp = self.chat_logprobs(infos[j]) if want_lp is not None else None
            choices[j] = {"index": j, "message": msg, "logprobs": lp, "finish_reason": reason}
        if any(c is None for c in choices):  # the client went away
            return JSONResponse({}, status_code=499)
        return {**head, "choices": choices,
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": n_out, "total_tokens": len(prompt) + n_out}}

    def chunk(self, head: dict, j: int, delta: dict, finish=None, logprobs=None) -> str:
        return _sse({**head, "object": "chat.completion.chunk",
                     "choices": [{"index": j, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]})

    def tool_call_deltas(self, head: dict, j: int, call: dict) -> list[str]:
        """A call as streamed fragments: id/name first, then the arguments string in pieces (with `index`)."""
        first = {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}
        out = [self.chunk(head, j, {"tool_calls": [first]})]
        args = call["function"]["arguments"]
        for k in range(0, len(args), 16):
            out.append(self.chunk(head, j, {"tool_calls": [{"index": 0, "function": {"arguments": args[k:k + 16]}}]}))
        return out

    def usage_chunk(self, head: dict, usage: dict) -> str:
        return _sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})

    async def replay_chat(self, head, choices, body: ChatRequest, usage) -> AsyncIterator[str]:
        for c in choices:
            j, msg = c["index"], c["message"]
            yield self.chunk(head, j, {"role": "assistant", "content": ""})
            if msg.get("tool_calls"):
                for s in self.tool_call_deltas(head, j, msg["tool_calls"][0]):
                    yield s
            else:
                yield self.chunk(head, j, {"content": msg["content"]})
            yield self.chunk(head, j, {}, c["finish_reason"])
        if body.stream_options and body.stream_options.include_usage:
            yield self.usage_chunk(head, usage)
        yield _sse("[DONE]")

    async def stream_chat(self, request, handles, queue, head, prompt, tools, body: ChatRequest,
                          budget: int) -> AsyncIterator[str]:
        ids, pending, n_out = [[] for _ in handles], [[] for _ in handles], 0
        want_lp = body.logprobs
        for j in range(len(handles)):
            yield self.chunk(head, j, {"role": "assistant", "content": ""})
        async for j, ev in self.events(request, handles, queue):
            if isinstance(ev, Delta):
                ids[j] += [t.id for t in ev.tokens]
                pending[j] += ev.tokens
                if ev.text:
                    lp = self.chat_logprobs(pending[j]) if want_lp else None
                    pending[j] = []
                    yield self.chunk(head, j, {"content": ev.text}, logprobs=lp)
                continue
            if ev.finish_reason == "error":
                yield _sse(errors.error_body(500, f"generation failed: {ev.error}"))
                return
            n_out += ev.n_tokens
            reason = ev.finish_reason
            if tools and ev.stop_id == self.tok.special_tokens[TOOL_CALL]:
                try:
                    call, text, n = await self.tool_phase(request, prompt + ids[j], tools, body, j, budget - len(ids[j]))
                except APIError as e:
                    yield _sse(errors.error_body(e.status, e.message, e.param, e.code))
                    return
                n_out += n
                if call is None:
                    yield self.chunk(head, j, {"content": text})
                    reason = "length"
                else:
                    for s in self.tool_call_deltas(head, j, call):
                        yield s
                    reason = "tool_calls"
            yield self.chunk(head, j, {}, reason)
        if body.stream_options and body.stream_options.include_usage:
            yield self.usage_chunk(head, {"prompt_tokens": len(prompt), "completion_tokens": n_out,
                                          "total_tokens": len(prompt) + n_out})
        yield _sse("[DONE]")

    # ---- completions -----------------------------------------------------------------------------------
    def prompts(self, body: CompletionRequest) -> list[list[int]]:
        p = body.prompt
        if isinstance(p, str):
            p = [p]
        if not p:
            raise APIError(400, "prompt is empty", param="prompt")
        if isinstance(p[0], int):
            p = [p]
        out = []
        for item in p:
            ids = self.tok.encode(item, allowed_special="all") if isinstance(item, str) else list(item)
            if isinstance(item, str) and not ids:  # an empty prompt starts a fresh document (as api.generate)
                ids = [self.tok.eos_id if self.tok.eos_id is not None else self.tok.bos_id]
            if not ids:
                raise APIError(400, "a token-id prompt is empty", param="prompt")
            bad = [i for i in ids if not 0 <= i < self.tok.vocab_size]
            if bad:
                raise APIError(400, f"token id {bad[0]} is outside the vocabulary (0..{self.tok.vocab_size - 1})",
                               param="prompt")
            out.append(ids)
        return out

    def completion_logprobs(self, infos: list[TokenInfo | None], ids: list[int], offset0: int) -> dict:
        tokens = [self.token_str(i) for i in ids]
        offsets, pos = [], offset0
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
        return {"tokens": tokens, "token_logprobs": [None if t is None else t.logprob for t in infos],
                "top_logprobs": [None if t is None else {self.token_str(i): lp for i, lp in t.top} for t in infos],
                "text_offset": offsets}

    async def completions(self, body: CompletionRequest, request: Request):
        self.check_model(body.model)
        prompts = self.prompts(body)
        budgets = [self.budget(len(p), body.max_tokens, default=16) for p in prompts]
        check_request(self.limits, [len(p) for p in prompts], body.n, budgets)
        eos = self.b.stop_ids
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": self.b.model_id}
        echoes = []  # per prompt: (text, logprobs of the prompt tokens or None)
        for p in prompts:
            scored = None
            if body.echo and body.logprobs is not None:
                scored = await self.run(lambda p=p: self.b.score(p, top=body.logprobs))
            echoes.append((self.tok.decode(p) if body.echo else "", scored))
        reqs = [r for p, m in zip(prompts, budgets) for r in self.gen_requests(body, p, m, eos, body.logprobs)]
        queue: asyncio.Queue = asyncio.Queue()
        handles = self.submit(reqs, queue)
        n_prompt = sum(len(p) for p in prompts)
        if body.stream:
            return StreamingResponse(self.stream_completions(request, handles, queue, head, body, echoes, n_prompt),
                                     media_type="text/event-stream")
        texts, ids, infos = [""] * len(reqs), [[] for _ in reqs], [[] for _ in reqs]
        reasons, n_out = [None] * len(reqs), 0
        async for k, ev in self.events(request, handles, queue):
            if isinstance(ev, Delta):
                texts[k] += ev.text
                ids[k] += [t.id for t in ev.tokens]
                infos[k] += ev.tokens
            elif ev.finish_reason == "error":
                raise APIError(500, f"generation failed: {ev.error}")
            else:
                reasons[k], n_out = ev.finish_reason, n_out + ev.n_tokens
        if any(r is None for r in reasons):
            return JSONResponse({}, status_code=499)
        choices = []
        for k in range(len(reqs)):
            pi = k // body.n
            echo_text, scored = echoes[pi]
            lp = None
            if body.logprobs is not None:
                all_ids = (prompts[pi] if body.echo else []) + ids[k]
                all_infos = (scored or []) + infos[k]
                lp = self.completion_logprobs(all_infos, all_ids, 0)
            choices.append({"index": k, "text": echo_text + texts[k], "logprobs": lp, "finish_reason": reasons[k]})
        return {**head, "choices": choices,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}}

    async def stream_completions(self, request, handles, queue, head, body, echoes, n_prompt) -> AsyncIterator[str]:
        def chunk(k, text, finish=None, lp=None):
            return _sse({**head, "choices": [{"index": k, "text": text, "logprobs": lp, "finish_reason": finish}]})
        n_out = 0
        for k in range(len(handles)):
            if body.echo:
                yield chunk(k, echoes[k // body.n][0])
        async for k, ev in self.events(request, handles, queue):
            if isinstance(ev, Delta):
                lp = None
                if body.logprobs is not None:
                    lp = self.completion_logprobs(ev.tokens, [t.id for t in ev.tokens], 0)
                if ev.text or lp:
                    yield chunk(k, ev.text, lp=lp)
            elif ev.finish_reason == "error":
                yield _sse(errors.error_body(500, f"generation failed: {ev.error}"))
                return
            else:
                n_out += ev.n_tokens
                yield chunk(k, "", ev.finish_reason)
        if body.stream_options and body.stream_options.include_usage:
            yield _sse({**head, "choices": [], "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out,
                                                         "total_tokens": n_prompt + n_out}})
        yield _sse("[DONE]")

    # ---- embeddings ------------------------------------------------------------------------------------
    async def embeddings(self, body: EmbeddingRequest):
        self.check_model(body.model)
        items = body.input
        if isinstance(items, str) or (items and isinstance(items[0], int)):
            items = [items]
        if not items:
            raise APIError(400, "input is empty", param="input")
        id_lists = []
        for item in items:
            ids = self.tok.encode(item) if isinstance(item, str) else list(item)
            if not ids:
                raise APIError(400, "an input is empty", param="input")
            if any(not 0 <= i < self.tok.vocab_size for i in ids):
                raise APIError(400, "a token id is outside the vocabulary", param="input")
            id_lists.append(ids[: self.b.ctx])
        vectors = await self.run(lambda: [self.b.embed(ids) for ids in id_lists])
        data = []
        for i, v in enumerate(vectors):
            if body.dimensions:
                v = v[: body.dimensions]
            emb = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if body.encoding_format == "base64" else v
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = sum(len(ids) for ids in id_lists)
        return {"object": "list", "data": data, "model": self.b.model_id,
                "usage": {"prompt_tokens": n, "total_tokens": n}}
