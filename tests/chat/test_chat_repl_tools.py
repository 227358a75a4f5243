"""Tools in the chat (issue 19 item 3): `zerollm chat --tools calculator,datetime,search:INDEX_DIR` runs
chat.tools.run_agent's loop, the same one as the agent API: the call is decoded under the tools' JSON Schema
(constrained, so always valid), executed, shown to the user and fed back before the model answers."""
from __future__ import annotations

import io
import json

import pytest

from zerollm import cli
from zerollm.chat.repl import ChatSession, run_repl
from zerollm.chat.tools import parse_tools, tool


def test_chat_session_calls_executes_shows_and_feeds_back(tiny_bpe_tokenizer, tool_happy_model):
    tok = tiny_bpe_tokenizer

    @tool
    def weather(city: str) -> str:
        """The weather in a city.

        Args:
            city: the city's name
        """
        return f"sunny in {city}"

    weather.parameters["properties"]["city"]["maxLength"] = 5
    model = tool_happy_model(tok)
    session = ChatSession(model, tok, max_new_tokens=8, temperature=0.0, tools=[weather], max_tool_steps=1)
    out = io.StringIO()
    session.reply("What's the weather in Paris?", out)
    roles = [m["role"] for m in session.conv.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = session.conv.messages[1]["tool_calls"][0]["function"]
    assert call["name"] == "weather" and json.loads(call["arguments"]) == {"city": "11111"}  # valid under the schema
    assert session.conv.messages[2]["content"] == "sunny in 11111"  # executed, fed back as the tool turn
    assert '[tool] weather({"city": "11111"}) → sunny in 11111' in out.getvalue()  # shown to the user


def test_cli_chat_with_builtin_tools(tmp_path, tiny_bpe_tokenizer, tool_happy_model, monkeypatch, capsys):
    from zerollm.train.checkpoint import save_checkpoint

    tok = tiny_bpe_tokenizer
    m = tool_happy_model(tok)
    ck = save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tok)
    monkeypatch.setattr("sys.stdin", io.StringIO("what is 1 times 1?\n/quit\n"))
    assert cli.main(["chat", "--model", str(ck), "--device", "cpu", "--tools", "calculator,datetime",
                     "--max-tool-steps", "1", "--max-new-tokens", "8", "--temperature", "0"]) == 0
    shown = capsys.readouterr().out
    line = next(x for x in shown.splitlines() if "[tool] " in x)
    assert '[tool] calculator({"expression": "111' in line and line.endswith("→ " + "1" * 200)  # ran, shown


def test_parse_tools(tmp_path):
    names = [t.name for t in parse_tools("calculator, datetime")]
    assert names == ["calculator", "current_time"]
    from zerollm.rag.index import build_index

    (tmp_path / "doc.txt").write_text("Transformers were introduced in 2017 by Vaswani et al.")
    build_index([tmp_path / "doc.txt"], tmp_path / "idx")
    search = parse_tools(f"search:{tmp_path / 'idx'}")[0]
    assert search.name == "search_documents" and "2017" in search.fn(query="Transformers introduced")
    with pytest.raises(ValueError, match="unknown tool 'shell'"):
        parse_tools("calculator,shell")
    with pytest.raises(ValueError, match="no such index"):
        parse_tools(f"search:{tmp_path / 'missing'}")


def test_tools_need_a_tool_calling_tokenizer(tmp_path, byte_tokenizer, tiny_model, capsys):
    with pytest.raises(ValueError, match="<\\|tool_call\\|>"):
        from zerollm.chat.tools import run_agent
        from zerollm.chat.conversation import Conversation

        conv = Conversation()
        conv.add("user", "hi")
        run_agent(tiny_model(vocab_size=257), byte_tokenizer, conv, parse_tools("calculator"))


def test_repl_loop_without_tools_is_one_reply(tiny_bpe_tokenizer, tiny_model):
    """No tools: run_agent is one plain chat reply (the REPL's path), greedy = the Engine's greedy text."""
    from zerollm.chat.format import prompt_ids
    from zerollm.engine.generate import GenerationConfig, generate

    tok = tiny_bpe_tokenizer
    model = tiny_model(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32, max_seq_len=256)
    session = ChatSession(model, tok, max_new_tokens=10, temperature=0.0)
    reply = session.say("hello")
    ids = prompt_ids([{"role": "user", "content": "hello"}], tok)
    ref = generate(model, tok, ids, GenerationConfig(max_new_tokens=10, temperature=0, stop_token_ids=session.stops()))
    assert reply == tok.decode(ref).strip()
    out = io.StringIO()
    lines = iter(["again", "/quit"])
    run_repl(session, read=lambda prompt: next(lines), out=out)
    assert [m["role"] for m in session.conv.messages] == ["user", "assistant"] * 2
