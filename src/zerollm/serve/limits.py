"""What one request may ask of the server, so no client can freeze it or exhaust the machine's memory.

    body        max_body_bytes (4 MB): counted while the body arrives, chunked or not (Content-Length is
                only a hint a client can leave out)                                         → 413
    prompt      the model's context length (prompt tokens + at least one new token)          → 400
    choices     prompts × n <= max_choices (64)                                              → 400
    tokens      sum over choices of (prompt + max_tokens) <= max_request_tokens (2**18)      → 413
    seed        any integer, reduced modulo 2**63 (torch's generator takes 64-bit seeds)
    constraint  response_format / tool schemas: a grammar over regex_grammar.MAX_STATES automaton states or
                nested over MAX_DEPTH is refused before compiling (the message names the keyword); compiling
                runs on one worker thread, off the event loop, for at most compile_timeout_s (10 s)  → 400
    cache       compiled constraints are kept up to cache_bytes (256 MB) in all, least recently used
                evicted first (their token tables grow while sequences decode, so sizes are re-read)

The body limit is plain ASGI middleware (`BodyLimit`): it reads the body itself, counting bytes, and hands
the app a replay of it, so an oversized body is refused without the app ever seeing it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections import OrderedDict
from dataclasses import dataclass

from . import errors
from .errors import APIError

SEED_MOD = 2 ** 63


@dataclass
class Limits:
    max_body_bytes: int = 4 << 20
    max_choices: int = 64
    max_request_tokens: int = 1 << 18
    compile_timeout_s: float = 10.0
    cache_bytes: int = 256 << 20


def reduce_seed(seed: int | None, k: int = 0) -> int | None:
    """A request seed (+ choice index k) as a valid 63-bit torch seed."""
    return None if seed is None else (seed + k) % SEED_MOD


def check_request(limits: Limits, prompt_lens: list[int], n: int, budgets: list[int]) -> None:
    """Per-request limits over all prompts × n choices (`budgets`: new tokens each prompt may get)."""
    choices = len(prompt_lens) * n
    if choices > limits.max_choices:
        raise APIError(400, f"{len(prompt_lens)} prompts × n={n} = {choices} choices; at most "
                            f"{limits.max_choices} per request", param="n")
    total = n * sum(p + b for p, b in zip(prompt_lens, budgets))
    if total > limits.max_request_tokens:
        raise APIError(413, f"the request asks for {total:,} tokens (prompts + max_tokens, × n); at most "
                            f"{limits.max_request_tokens:,} per request", param="max_tokens")


class BodyLimit:
    """ASGI middleware: read the request body counting bytes (chunked bodies included); over the limit →
    413 without reading further; else the app gets the whole body as one message, then the live channel."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left before the body was complete
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                response = errors.error_response(413, f"request body over the {self.max_body_bytes} byte limit")
                return await response(scope, receive, send)
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ConstraintCache:
    """Compiled constraints by key, bounded by bytes (Constraint.nbytes), compiled on one worker thread
    with a time limit so a slow compile never blocks the event loop."""

    def __init__(self, max_bytes: int, timeout_s: float):
        self.max_bytes, self.timeout_s = max_bytes, timeout_s
        self.items: OrderedDict = OrderedDict()
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="zerollm-compile")

    async def get(self, key: str, build, param: str):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        future = self.pool.submit(build, self.timeout_s)
        try:
            c = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s + 1)
        except asyncio.TimeoutError:
            raise APIError(400, f"the JSON schema took over {self.timeout_s:g} s to compile", param=param) from None
        except (ValueError, TypeError, KeyError, NotImplementedError, RecursionError) as e:
            raise APIError(400, f"unsupported JSON schema: {e}", param=param) from None
        self.items[key] = c
        self.evict()
        return c

    def evict(self) -> None:
        total = sum(c.nbytes() for c in self.items.values())
        while total > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            total -= old.nbytes()
        if total > self.max_bytes:  # one constraint alone over the budget is not kept
            self.items.clear()
