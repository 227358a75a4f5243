"""`zerollm serve --tools`: the server executes its built-in tools for chat requests that bring none of their
own (serve/server_tools.py, run_agent's loop over the HTTP path); requests with `tools` keep client-side
execution, and without --tools nothing is executed (the default)."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from zerollm.chat.tools import tool  # noqa: E402


@tool
def weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny in {city}"


weather.parameters["properties"]["city"]["maxLength"] = 3


def test_server_executes_its_tools(tiny_bpe_tokenizer, tool_happy_model):
    from zerollm.serve import create_app
    from zerollm.serve.backend import Backend

    backend = Backend(tool_happy_model(tiny_bpe_tokenizer), tiny_bpe_tokenizer, model_id="tiny")
    try:
        with TestClient(create_app(backend, tools=[weather])) as client:
            body = {"model": "tiny", "messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 80, "temperature": 0}
            r = client.post("/v1/chat/completions", json=body).json()
            assert r["tool_steps"][0] == {"name": "weather", "arguments": {"city": "111"}, "result": "sunny in 111"}
            assert len(r["tool_steps"]) == 4  # this model always wants a tool: the loop stops at max_steps
            assert r["choices"][0]["finish_reason"] != "tool_calls"  # the last step must answer in text
            own = {**body, "tools": [weather.to_openai()], "tool_choice": "required"}
            r2 = client.post("/v1/chat/completions", json=own).json()  # the client's tools: returned, not run
            assert "tool_steps" not in r2 and r2["choices"][0]["finish_reason"] == "tool_calls"
        with TestClient(create_app(backend)) as client:  # default: no server-side tools
            r3 = client.post("/v1/chat/completions", json=body).json()
            assert "tool_steps" not in r3 and r3["choices"][0]["message"].get("tool_calls") is None
    finally:
        backend.close()


def test_server_tools_stop_when_the_context_is_full(tiny_bpe_tokenizer, tool_happy_model):
    from zerollm.serve import create_app
    from zerollm.serve.backend import Backend

    backend = Backend(tool_happy_model(tiny_bpe_tokenizer, ctx=400), tiny_bpe_tokenizer, model_id="tiny")
    try:
        with TestClient(create_app(backend, tools=[weather])) as client:
            body = {"model": "tiny", "messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 80, "temperature": 0}
            r = client.post("/v1/chat/completions", json=body).json()
            assert 1 <= len(r["tool_steps"]) < 4 and "no longer fit" in r["choices"][0]["message"]["content"]
    finally:
        backend.close()
