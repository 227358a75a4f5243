"""The books' LangChain-style chain (issue 19 item 8): template → model → parser with `|`, streaming."""
from __future__ import annotations

import pytest

from zerollm.chat.chain import (LLM, ChatPromptTemplate, CommaSeparatedListOutputParser, JsonOutputParser,
                                PromptTemplate, RunnableLambda, StrOutputParser)
from zerollm.engine.generate import GenerationConfig, generate


@pytest.fixture
def llm_parts(tiny_bpe_tokenizer, tiny_model):
    tok = tiny_bpe_tokenizer
    return tiny_model(2, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32,
                      max_seq_len=128), tok


def test_prompt_model_parser_chain_invokes_and_streams(llm_parts):
    model, tok = llm_parts
    prompt = PromptTemplate("Explain {topic} to a {reader}:")
    assert prompt.input_variables == ["reader", "topic"]
    chain = prompt | LLM(model, tok, max_new_tokens=12) | StrOutputParser()
    text = chain.invoke({"topic": "the cat", "reader": "child"})
    ids = tok.encode("Explain the cat to a child:")
    assert text == tok.decode(generate(model, tok, ids, GenerationConfig(max_new_tokens=12, temperature=0))).strip()
    pieces = list(chain.stream({"topic": "the cat", "reader": "child"}))
    assert len(pieces) > 1 and "".join(pieces).strip() == text  # streamed piece by piece through the parser
    upper = chain | (lambda s: s.upper())  # a plain function joins the chain
    assert upper.invoke({"topic": "the cat", "reader": "child"}) == text.upper()
    with pytest.raises(ValueError, match="missing variable"):
        prompt.invoke({"topic": "x"})


def test_chat_prompt_template_uses_the_models_chat_format(llm_parts):
    model, tok = llm_parts
    chat = ChatPromptTemplate.from_messages([("system", "You are {role}."), ("user", "{question}")])
    msgs = chat.invoke({"role": "brief", "question": "hello?"})
    assert msgs == [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "hello?"}]
    out = (chat | LLM(model, tok, max_new_tokens=6)).invoke({"role": "brief", "question": "hello?"})
    assert isinstance(out, str)


def test_parsers():
    assert JsonOutputParser().invoke('Sure! ```json\n{"a": [1, 2]}\n``` done') == {"a": [1, 2]}
    assert JsonOutputParser().invoke('x = [1, "y"] tail') == [1, "y"]
    with pytest.raises(ValueError, match="no JSON"):
        JsonOutputParser().invoke("nothing here")
    assert CommaSeparatedListOutputParser().invoke("red, green ,blue,") == ["red", "green", "blue"]
    assert (RunnableLambda(str.strip) | StrOutputParser()).invoke("  hi ") == "hi"
