"""Built-in tools executed by the server (`zerollm serve --tools calculator,datetime,search:INDEX_DIR`; off
by default).

OpenAI's protocol leaves tool execution to the client: the server returns `tool_calls` and the client
sends back `tool` messages. With server tools, a chat request that brings no `tools` of its own is answered
by the same loop as chat.tools.run_agent, run over the HTTP path so it shares the backend's batching:

    messages ──chat (tools offered, n=1)──▶ finish_reason "tool_calls"? ──no──▶ the answer
                                                  │yes
        execute the call here (chat.tools.execute: validated, time-limited) ─▶ append the assistant's call
        and a `tool` message with the result ─▶ again, at most `max_steps` calls

The answer is an ordinary chat.completion; the executed calls are listed under the extra key
`tool_steps` ([{"name", "arguments", "result"}]) so the client can show them. A streamed request gets the
final answer replayed as chunks.
"""
from __future__ import annotations

import asyncio
import json

from fastapi.responses import StreamingResponse

from zerollm.chat.tools import Tool, execute

from .errors import APIError
from .protocol import ChatRequest, as_dict


async def chat_with_server_tools(api, body: ChatRequest, request, tools: list[Tool], max_steps: int = 4):
    """Answer `body` with the server's `tools` executed server-side (see the module docstring)."""
    by_name = {t.name: t for t in tools}
    specs = [t.to_openai() for t in tools]
    messages = [as_dict(m) for m in body.messages]
    steps: list[dict] = []
    base = body.model_dump(by_alias=True, exclude_none=True)
    last: dict = {}  # the latest answer (a call), kept for the message when the context fills up
    while True:
        sub = ChatRequest.model_validate({**base, "messages": messages, "tools": specs, "n": 1, "stream": False,
                                          "tool_choice": "auto" if len(steps) < max_steps else "none"})
        try:
            result = await api.chat(sub, request)
        except APIError as e:
            if not steps or e.status != 400:
                raise
            # the tool results filled the context window: say so, as run_agent does
            result = {**last, "choices": [{"index": 0, "logprobs": None, "finish_reason": "length", "message": {
                "role": "assistant", "content": f"stopped: the tool results no longer fit in the context ({e})"}}]}
            break
        if not isinstance(result, dict):  # the client went away
            return result
        last = result
        choice = result["choices"][0]
        if choice["finish_reason"] != "tool_calls":
            break
        call = choice["message"]["tool_calls"][0]
        fn = call["function"]
        outcome = await asyncio.to_thread(execute, by_name[fn["name"]], fn["arguments"])
        messages += [{"role": "assistant", "content": choice["message"].get("content"), "tool_calls": [call]},
                     {"role": "tool", "content": outcome.content, "tool_call_id": call["id"]}]
        steps.append({"name": fn["name"], "arguments": json.loads(fn["arguments"]), "result": outcome.content})
    result["tool_steps"] = steps
    if body.stream:
        head = {k: result[k] for k in ("id", "object", "created", "model")}
        return StreamingResponse(api.replay_chat(head, result["choices"], body, result["usage"]),
                                 media_type="text/event-stream")
    return result
