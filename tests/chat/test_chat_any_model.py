"""Chat with any model (issue 19 item 2): a model without a chat template or ChatML tokens (a base model)
is prompted in the plain "User:/Assistant:" format with a one-line warning, through the one renderer
(chat/format.py); replies stop at the next "User:"; history is limited by a message count (max_history)
as well as by the token budget."""
from __future__ import annotations

import warnings

import pytest

from zerollm.chat.conversation import Conversation
from zerollm.chat.format import (PLAIN_STOP_STRINGS, PLAIN_TEMPLATE, NoChatTemplateWarning, prompt_ids, render,
                                 resolve_template, stop_strings)
from zerollm.chat.repl import ChatSession


def test_plain_format_for_a_base_tokenizer(byte_tokenizer, tiny_bpe_tokenizer):
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]
    with pytest.warns(NoChatTemplateWarning, match="User:/Assistant:"):
        ids = prompt_ids(msgs, byte_tokenizer)
    assert byte_tokenizer.decode(ids) == "Be kind.\n\nUser: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:"
    with pytest.warns(NoChatTemplateWarning):
        r = render(msgs[:3], byte_tokenizer)  # training masks work too: the assistant's words are the target
    said = byte_tokenizer.decode([i for i, m in zip(r.ids, r.mask) if m])
    assert said == " Hello!\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ChatML tokenizer or an own template: no warning, no plain format
        assert resolve_template(tiny_bpe_tokenizer) is None and resolve_template(byte_tokenizer, "{{x}}") == "{{x}}"
    assert stop_strings(PLAIN_TEMPLATE) == PLAIN_STOP_STRINGS == ["\nUser:"] and stop_strings(None) == []


def test_books_simple_chatbot_on_a_base_model(byte_tokenizer, tiny_model):
    """A chat session over a base model: the plain format, replies cut at "User:", history kept."""
    model = tiny_model(vocab_size=byte_tokenizer.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32,
                       max_seq_len=256)
    with pytest.warns(NoChatTemplateWarning):
        bot = ChatSession(model, byte_tokenizer, max_new_tokens=12, temperature=0.0, max_history=4)
    seen = []
    submit = bot.engine.submit
    bot.engine.submit = lambda ids, cfg: (seen.append((ids, cfg)), submit(ids, cfg))[1]
    first = bot.say("Hello")
    second = bot.say("And you?")
    assert isinstance(first, str) and "User:" not in first and "User:" not in second
    text = byte_tokenizer.decode(seen[-1][0])
    assert text == f"User: Hello\nAssistant: {first}\nUser: And you?\nAssistant:"
    assert seen[-1][1].stop_strings == ["\nUser:"] and byte_tokenizer.eos_id in seen[-1][1].stop_token_ids
    for k in range(3):
        bot.say(f"message {k}")
    assert byte_tokenizer.decode(seen[-1][0]).count("User:") == 2  # max_history=4 messages: the last 2 turns


def test_max_history_counts_messages_and_keeps_whole_turns(tiny_bpe_tokenizer):
    tok = tiny_bpe_tokenizer
    conv = Conversation("sys", max_history=3)
    for k in range(4):
        conv.add("user", f"q{k}")
        conv.add("assistant", f"a{k}")
    conv.add("user", "q4")
    ids, dropped = conv.fit(tok, 10_000)
    text = tok.decode(ids)
    assert dropped == 3 and "q2" not in text and "q3" in text and "a3" in text and "q4" in text and "sys" in text
    conv.max_history = 1  # fewer messages than the newest turn: the newest turn stays whole
    assert "q4" in tok.decode(conv.fit(tok, 10_000)[0])
    with pytest.raises(ValueError, match="max_history"):
        Conversation(max_history=0)
