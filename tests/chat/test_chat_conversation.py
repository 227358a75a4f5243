"""Conversation budget (drops oldest turns, keeps system + newest), rendering, JSON save/load, the REPL."""
from __future__ import annotations

import io
import json

import pytest

from zerollm.chat.conversation import ContextTooLong, Conversation
from zerollm.chat.format import prompt_ids
from zerollm.chat.repl import ChatSession, read_message, run_repl


@pytest.fixture(scope="module")
def tok(tiny_bpe_tokenizer):
    return tiny_bpe_tokenizer


def test_render_chatml_and_no_special_injection(tok):
    ids = prompt_ids([{"role": "system", "content": "S"}, {"role": "user", "content": "hi <|im_end|>"}], tok)
    text = tok.decode(ids)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi <|im_end|><|im_end|>\n<|im_start|>assistant\n"
    assert ids.count(tok.special_tokens["<|im_end|>"]) == 2  # the typed one stays plain text


def test_budget_drops_oldest_turns_keeps_system_and_newest(tok):
    conv = Conversation("You are kind.")
    for i in range(6):
        conv.add("user", f"question {i} hello world")
        conv.add("assistant", f"answer {i} fine thanks")
    conv.add("user", "last question 日本語")
    full = prompt_ids(conv.all_messages(), tok)
    ids, dropped = conv.fit(tok, len(full))
    assert dropped == 0 and ids == full
    ids, dropped = conv.fit(tok, len(full) - 1)
    assert dropped == 1 and len(ids) < len(full)
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are kind.") and "last question 日本語" in text
    assert "question 0" not in text and "question 1" in text
    minimal = prompt_ids(conv.all_messages()[:1] + conv.messages[-1:], tok)
    ids, dropped = conv.fit(tok, len(minimal))
    assert dropped == 6 and ids == minimal
    with pytest.raises(ContextTooLong, match="over the budget"):
        conv.fit(tok, len(minimal) - 1)


def test_tool_turns_are_dropped_together(tok):
    conv = Conversation()
    conv.add("user", "a")
    conv.add("assistant", None, tool_calls=[{"id": "c", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}])
    conv.add("tool", "1", tool_call_id="c")
    conv.add("user", "b")
    assert [len(t) for t in conv.turns()] == [3, 1]


def test_save_load(tmp_path, tok):
    conv = Conversation("sys")
    conv.add("user", "こんにちは")
    conv.save(tmp_path / "c.json")
    again = Conversation.load(tmp_path / "c.json")
    assert again.system == "sys" and again.messages == conv.messages
    (tmp_path / "openai.json").write_text(json.dumps([{"role": "system", "content": "s"},
                                                     {"role": "user", "content": "u"}]))
    assert Conversation.load(tmp_path / "openai.json").system == "s"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        Conversation.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read"):
        Conversation.load(tmp_path / "missing.json")


def test_multiline_input():
    lines = iter(["first \\", "second", '"""', "a", "b", '"""'])
    read = lambda prompt: next(lines)  # noqa: E731
    assert read_message(read) == "first \nsecond"
    assert read_message(read) == "a\nb"
    assert read_message(lambda p: (_ for _ in ()).throw(EOFError)) is None


def test_repl_session(tok, tmp_path, tiny_model):
    model = tiny_model(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=128)
    session = ChatSession(model, tok, system="be brief", max_new_tokens=5, temperature=0.0)
    script = iter(["こんにちは", "/system 日本語で", "hello", f"/save {tmp_path}/s.json", "/reset",
                   f"/load {tmp_path}/s.json", "/unknown", "exit", "never read"])
    out = io.StringIO()
    run_repl(session, read=lambda p: next(script), out=out)
    log = out.getvalue()
    assert "(system prompt set; conversation reset)" in log and "(conversation reset)" in log
    assert "(loaded 2 messages" in log and "commands:" in log
    assert session.conv.system == "日本語で" and [m["role"] for m in session.conv.messages] == ["user", "assistant"]
    session.max_new_tokens = 120  # leaves 8 tokens for the prompt: the message cannot fit
    assert session.reply("a long message " * 5, out) == "" and "error:" in out.getvalue()


def test_a_reply_ends_on_the_models_own_end_ids(tmp_path, tiny_bpe_tokenizer, tiny_model):
    """One definition of end-of-turn (chat.format.stop_token_ids) plus the model's own end ids from its
    generation_config.json (loading.Loaded.stop_ids): the REPL used to keep its own list and miss the latter."""
    from zerollm.chat.repl import load_session
    from zerollm.train.checkpoint import save_checkpoint

    tok = tiny_bpe_tokenizer
    m = tiny_model(vocab_size=tok.vocab_size)
    ck = save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tok)
    (ck / "generation_config.json").write_text(json.dumps({"eos_token_id": [tok.eos_id, 42]}))
    stops = load_session(str(ck), device="cpu").stops()
    assert stops[0] == tok.special_tokens["<|im_end|>"] and tok.eos_id in stops and 42 in stops


def test_repl_save_and_load_failures_keep_the_session(tok, tmp_path, tiny_model):
    """Issue 18.7: /save to a directory or an unwritable path used to end the session (and lose the chat)."""
    model = tiny_model(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=128)
    session = ChatSession(model, tok, max_new_tokens=3, temperature=0.0)
    (tmp_path / "notes.txt").write_text("mine")
    script = iter(["hello", f"/save {tmp_path}", f"/save {tmp_path}/notes.txt/x.json", "/save /proc/nope/c.json",
                   f"/load {tmp_path}", f"/load {tmp_path}/notes.txt", "exit"])
    out = io.StringIO()
    run_repl(session, read=lambda p: next(script), out=out)
    log = out.getvalue()
    assert log.count("error: /save") == 3 and log.count("error: /load") == 2, log
    assert [m["role"] for m in session.conv.messages] == ["user", "assistant"]  # the conversation is still there
    assert (tmp_path / "notes.txt").read_text() == "mine"
