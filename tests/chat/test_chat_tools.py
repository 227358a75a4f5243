"""Tools: the calculator refuses anything but arithmetic; tools from functions and OpenAI specs; execution
errors and timeouts; the constrained decoder always yields schema-valid JSON, even from a random model;
the agent loop."""
from __future__ import annotations

import json
import time
from typing import Literal

import pytest
import torch

from zerollm.chat.conversation import Conversation
from zerollm.chat.format import prompt_ids
from zerollm.chat.tools import (CalculatorError, SchemaError, Tool, builtin_tools, calculate, calculator,
                                decode_tool_call, execute, run_agent, tool, tool_call_schema, validate)
from zerollm.chat.format import render_chatml
from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.tokenizer.bpe import train_bpe


@pytest.fixture(scope="module")
def tok():
    text = ("calculator expression 12 * (3 + 4) = 84. What is 7 plus 5? The answer is 12. 日本語のテキスト。"
            '{"name": "calculator", "arguments": {"expression": "1+2"}} weather city Paris Tokyo ') * 20
    return train_bpe([text], vocab_size=370, show_progress=False)


def random_model(tok, seed=0, ctx=512):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, d_model=32, max_seq_len=ctx)
    return Transformer(cfg).eval()


# ---- calculator ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("expr,value", [("12*(3+4)", 84), ("2^10", 1024), ("-3 + +4", 1), ("7 / 2", 3.5),
                                        ("7 // 2", 3), ("7 % 4", 3), ("１２×３", 36),
                                        ("0.1 + 0.2", pytest.approx(0.3)), ("2 ** -1", 0.5)])
def test_calculator_arithmetic(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr,msg", [
    ("__import__('os').system('ls')", "function calls"), ("x + 1", "names"), ("(1).real", "attributes"),
    ("[1][0]", "indexing"), ("1 < 2", "comparisons"), ("True + 1", "only numbers"), ("'a' * 3", "only numbers"),
    ("9 ** 9 ** 9", "exponent"), ("10 ** 5000", "exponent"), ("(10 ** 999) ** 2", "digits"),
    ("1 / 0", "division by zero"), ("1e308 * 10", "finite"), ("lambda: 1", "Lambda"), ("1 +", "not an arithmetic"),
    ("", "empty"), ("1+" * 200 + "1", "longer than"), ("-" * 150 + "1", "nested deeper"),
    # issue 18: commas were stripped (1,5 -> 15), complex and inf results reported as success
    ("1,5", "commas"), ("1,000 * 2", "commas"), ("(-8) ** 0.5", "not a real number"), ("1e999", "finite"),
    ("1e308 * 10 - 1e308 * 10", "finite"), ("(-1) ** 0.5 * 0", "not a real number"),
])
def test_calculator_refuses(expr, msg):
    with pytest.raises(CalculatorError, match=msg):
        calculate(expr)


def test_calculator_never_uses_eval(monkeypatch):
    import builtins

    monkeypatch.setattr(builtins, "eval", lambda *a: pytest.fail("eval called"))
    assert calculator("6*7") == "42"


# ---- tools and execution ---------------------------------------------------------------------------------------
def test_tool_from_function_and_openai_shape():
    def weather(city: str, unit: Literal["C", "F"] = "C", days: int = 1) -> str:
        """Get the weather.

        Args:
            city: the city name
            unit: temperature unit
        """
        return f"{city}: sunny"

    t = tool(weather)
    spec = t.to_openai()
    assert spec["function"]["description"] == "Get the weather."
    params = spec["function"]["parameters"]
    assert params["required"] == ["city"] and params["properties"]["unit"]["enum"] == ["C", "F"]
    assert params["properties"]["city"] == {"type": "string", "description": "the city name"}
    assert Tool.from_openai(json.loads(json.dumps(spec))).parameters == params
    with pytest.raises(SchemaError):
        Tool.from_openai({"type": "function"})

    def untyped(x):
        return x
    with pytest.raises(SchemaError, match="type hint"):
        tool(untyped)


def test_execute_errors_and_timeout():
    def boom(x: int) -> int:
        raise RuntimeError("kaput")

    def hang(x: int) -> int:
        time.sleep(3)
        return x

    assert execute(tool(boom), {"x": 1}).content == "error: tool boom failed: RuntimeError: kaput"
    t0 = time.perf_counter()
    assert "timed out after 0.1 s" in execute(tool(hang, timeout=0.1), {"x": 1}).content
    assert time.perf_counter() - t0 < 1
    assert "expected integer" in execute(tool(hang), {"x": "one"}).content
    assert "missing required property 'x'" in execute(tool(hang), {}).content
    assert "not valid JSON" in execute(tool(hang), "{x:").content
    calc = builtin_tools()[0]
    assert execute(calc, {"expression": "open('f')"}).content.startswith("error: tool calculator failed: "
                                                                         "CalculatorError: only numbers")


def test_hung_threads_are_capped_and_process_tools_are_killed():
    import threading

    from zerollm.chat import tools as T

    release = threading.Event()

    def stuck(x: int) -> int:
        release.wait(10)
        return x

    t = tool(stuck, timeout=0.05)
    try:
        msgs = [execute(t, {"x": 1}).content for _ in range(T.MAX_HUNG_PER_TOOL + 1)]
        assert all("timed out after 0.05 s (it may still be running" in m for m in msgs[:-1])
        assert "still running after their timeout; not starting another" in msgs[-1]
    finally:
        release.set()

    def forever(x: int) -> int:
        while True:
            pass

    def double(x: int) -> dict:
        return {"twice": 2 * x}

    t0 = time.perf_counter()
    assert execute(tool(forever, timeout=0.2, isolation="process"), {"x": 1}).content == (
        "error: tool forever timed out after 0.2 s (its process was killed)")
    assert time.perf_counter() - t0 < 3
    assert not [c for c in __import__("multiprocessing").active_children() if c.name == "tool-forever"]
    assert execute(tool(double, isolation="process"), {"x": 21}).content == '{"twice": 42}'

    def boom() -> int:
        raise RuntimeError("kaput")

    assert execute(tool(boom, isolation="process"), {}).content == "error: tool boom failed: RuntimeError: kaput"


# ---- constrained decoding -----------------------------------------------------------------------------------------
SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 12},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "temp": {"type": "number"},
    "unit": {"enum": ["C", "F"]},
    "alerts": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "note": {"type": "string", "maxLength": 20}},
    "required": ["city", "days", "temp", "unit", "alerts", "tags"]}
TOOLS = [Tool("weather", "weather", SCHEMA), builtin_tools()[0]]


NESTED = {"type": "object", "properties": {
    "where": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                               "country": {"enum": ["JP", "FR", "日本"]}},
              "required": ["city", "country"]},
    "when": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
    "ratio": {"type": ["number", "null"]}},
    "required": ["where", "when"]}


@pytest.mark.parametrize("seed", range(4))
def test_random_model_always_yields_valid_json(tok, seed):
    """The engine's constrained decoder gives a schema-valid call from a random model at a high temperature:
    nested objects, enums (one non-ASCII), integers, numbers, optional fields, arrays with bounds."""
    model = random_model(tok, seed)
    prompt = tok.encode("call a tool: ")
    tools = TOOLS + [Tool("nested", "nested", NESTED)]
    call = decode_tool_call(model, tok, prompt, tools, temperature=1.5, seed=seed, max_new_tokens=160)
    assert call.name in ("weather", "calculator", "nested")
    assert validate(call.arguments, {t.name: t for t in tools}[call.name].parameters) == []
    assert json.loads(tok.decode(call.ids)) == {"name": call.name, "arguments": call.arguments}
    assert validate({"name": call.name, "arguments": call.arguments}, tool_call_schema(tools)) == []


def test_tokens_span_json_punctuation(tok):
    """The test tokenizer merges JSON punctuation with neighbours, so masks must work across token edges."""
    pieces = [tok.decode([i]) for i in tok.encode(json.dumps({"name": "calculator", "arguments": {"expression": "1+2"}}))]
    assert any(len(p) > 1 and any(c in p for c in '{}":,') for p in pieces)


def test_validate_messages():
    assert "$.city: expected string, got int 1" in validate({"city": 1}, SCHEMA)
    assert "missing required property 'days'" in " ".join(validate({"city": "x"}, SCHEMA))
    assert "$.days: 9 outside [1, 7]" in validate({**_ok_weather(), "days": 9}, SCHEMA)
    assert "must be one of ['C', 'F']" in " ".join(validate({**_ok_weather(), "unit": "K"}, SCHEMA))
    assert validate(_ok_weather(), SCHEMA) == []
    assert "matches none of the anyOf" in " ".join(validate({"name": "nope", "arguments": {}}, tool_call_schema(TOOLS)))
    with pytest.raises(SchemaError, match="no tools"):
        tool_call_schema([])


def _ok_weather():
    return {"city": "Paris", "days": 2, "temp": 1.5, "unit": "C", "alerts": False, "tags": []}


# ---- conversation rendering + agent loop ----------------------------------------------------------------------------
def test_agent_loop_with_random_model(tok):
    model = random_model(tok, 1)
    conv = Conversation("You are helpful.")
    conv.add("user", "What is 6 times 7?")
    steps_seen = []
    calc = builtin_tools()[0]
    calc.parameters["properties"]["expression"]["maxLength"] = 12
    res = run_agent(model, tok, conv, [calc], max_steps=2, max_new_tokens=8, tool_choice="required",
                    on_step=steps_seen.append)
    assert len(res.steps) >= 1 and steps_seen[0] is res.steps[0]
    first = res.steps[0]
    assert first.call.name == "calculator" and isinstance(first.call.arguments["expression"], str)
    roles = [m["role"] for m in conv.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant"
    assert conv.messages[2]["content"] == first.result.content  # result (or clear error) fed back


def test_agent_prompt_is_the_sft_training_prefix(tok):
    """What run_agent renders at inference is, id for id, the prefix SFT trained on (chat_format.render_chatml);
    the loss mask covers the tool call, its closing marker and <|im_end|>, not the tool result."""
    calc = builtin_tools()[0]
    call = {"id": "call_0", "type": "function", "function": {"name": "calculator",
                                                              "arguments": json.dumps({"expression": "6 * 7"})}}
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6 times 7?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "42", "tool_call_id": "call_0"},
            {"role": "assistant", "content": "42."}]
    full = render_chatml(msgs, tok, tools=[calc.to_openai()])
    conv = Conversation("Be brief.")
    conv.add("user", "6 times 7?")
    p1 = prompt_ids(conv.all_messages(), tok, tools=[calc])
    assert full.ids[:len(p1)] == p1 and full.mask[len(p1)]
    sp = tok.special_tokens
    assert full.ids[len(p1)] == sp["<|tool_call|>"]
    conv.add("assistant", None, tool_calls=[call])
    conv.add("tool", "42", tool_call_id="call_0")
    p2 = prompt_ids(conv.all_messages(), tok, tools=[calc])
    assert full.ids[:len(p2)] == p2
    call_span = [i for i, m in zip(full.ids[len(p1):len(p2)], full.mask[len(p1):len(p2)]) if m]
    assert call_span[0] == sp["<|tool_call|>"] and call_span[-2:] == [sp["<|/tool_call|>"], sp["<|im_end|>"]]
    assert json.loads(tok.decode(call_span[1:-2])) == {"name": "calculator", "arguments": {"expression": "6 * 7"}}
    assert not any(m for i, m in zip(full.ids, full.mask) if i == sp["<|tool_result|>"])
