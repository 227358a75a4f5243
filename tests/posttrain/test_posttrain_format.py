"""Chat rendering + loss masks and post-training data formats."""
from __future__ import annotations

import json

import pytest

from zerollm.chat.format import render_chatml, render_template, render_template_text
from zerollm.chat.format import CHATML_TEMPLATE
from zerollm.posttrain import data as D
from zerollm.posttrain.tasks import byte_tokenizer

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|>"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def _targets(tok, r):
    """Decoded runs of consecutive target tokens."""
    runs, cur = [], []
    for i, m in zip(r.ids, r.mask):
        if m:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs + ([tok.decode(cur)] if cur else [])


def test_mask_covers_assistant_tokens_and_end_of_turn(tok):
    r = render_chatml(CONV, tok)
    assert _targets(tok, r) == ["Hello!<|im_end|>", "4<|im_end|>"]
    # the whole rendering is exactly the ChatML template's string; a user's literal "<|im_end|>" stays text
    assert tok.decode(r.ids) == render_template_text(CHATML_TEMPLATE, CONV)
    im_end = tok.special_tokens["<|im_end|>"]
    assert r.ids.count(im_end) == len(CONV)
    ids, labels = D.encode_sft(CONV, tok, 1000)
    assert [t for t in labels if t != -100][-1] == im_end
    assert sum(t != -100 for t in labels) == sum(r.mask[1:])
    assert tok.decode([t for t in labels if t != -100]) == "Hello!<|im_end|>4<|im_end|>"


def test_generation_prompt_and_last_only(tok):
    r = render_chatml(CONV[:2], tok, add_generation_prompt=True)
    assert tok.decode(r.ids).endswith("<|im_start|>assistant\n") and not any(r.mask)
    assert _targets(tok, render_chatml(CONV, tok, train_on="last")) == ["4<|im_end|>"]


def test_tool_calls_and_results(tok):
    conv = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."}]
    r = render_chatml(conv, tok, tools=[{"type": "function", "function": {"name": "get"}}])
    text = tok.decode(r.ids)
    assert text.startswith("<|im_start|>system\n# Tools\n{")
    assert '<|tool_call|>{"name": "get", "arguments": {"city": "Paris"}}<|/tool_call|><|im_end|>' in text
    assert "<|im_start|>tool\n<|tool_result|>sunny<|/tool_result|><|im_end|>" in text
    assert _targets(tok, r) == ['<|tool_call|>{"name": "get", "arguments": {"city": "Paris"}}<|/tool_call|><|im_end|>',
                                "Sunny.<|im_end|>"]


def test_jinja_generation_tags_and_prefix_diff_agree(tok):
    marked = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
              "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}"
              "{{ '\\n' }}{% else %}{{ m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    a = render_template(CONV, tok, marked)
    assert _targets(tok, a) == ["Hello!<|im_end|>", "4<|im_end|>"]
    b = render_template(CONV, tok, CHATML_TEMPLATE)  # no markers: prefix diff, cut after the end-of-turn token
    assert _targets(tok, b) == ["Hello!<|im_end|>", "4<|im_end|>"]
    assert tok.decode(a.ids) == tok.decode(b.ids) == render_template_text(CHATML_TEMPLATE, CONV)
    plain = [dict(m, content=m["content"].replace(" <|im_end|>", "")) for m in CONV]  # (a template would read
    c, d = render_template(plain, tok, CHATML_TEMPLATE), render_chatml(plain, tok)  # a typed <|im_end|> as special)
    assert (c.ids, c.mask) == (d.ids, d.mask)  # the Jinja ChatML and the built-in renderer agree exactly
    assert _targets(tok, render_template(CONV, tok, CHATML_TEMPLATE, train_on="last")) == ["4<|im_end|>"]
    assert _targets(tok, render_template(CONV, tok, marked, train_on="last")) == ["4<|im_end|>"]


def test_jinja_matches_transformers_apply_chat_template(tok):
    tr = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    t = tr.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, "<unk>")))
    t.chat_template = CHATML_TEMPLATE
    assert t.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True) == \
        render_template_text(CHATML_TEMPLATE, CONV, add_generation_prompt=True)


def test_format_detection_and_conversion(tmp_path, tok):
    recs = [{"messages": CONV},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "s"},
            {"prompt": "p", "completion": "c"},
            {"instruction": "Add.", "input": "1 2", "output": "3"},
            {"text": "plain"}]
    fmts = [D.detect_format(r) for r in recs]
    assert fmts == ["messages", "sharegpt", "prompt_completion", "alpaca", "text"]
    sg = D.to_messages(recs[1])
    assert [m["role"] for m in sg] == ["system", "user", "assistant"]
    alp = D.to_messages(recs[3])
    assert "### Input:\n1 2\n\n### Response:" in alp[0]["content"] and alp[1]["content"] == "3"
    path = tmp_path / "mix.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert len(D.load_sft_examples(path, tok, 512)) == 5
    (tmp_path / "bad.jsonl").write_text('{"messages": []}\n{oops\n')
    with pytest.raises(Exception, match="bad.jsonl:2"):
        D.read_records(tmp_path / "bad.jsonl")


def test_records_with_tools_render_them_as_at_inference(tmp_path, tok):
    from zerollm.chat.format import render

    tool = {"type": "function", "function": {"name": "add", "description": "a + b",
                                             "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}
    conv = [{"role": "user", "content": "1+2?"}, {"role": "assistant", "content": "3"}]
    recs = [{"messages": conv, "tools": [tool]}, {"conversations": [{"from": "human", "value": "1+2?"},
                                                                    {"from": "gpt", "value": "3"}],
                                                  "tools": json.dumps([tool])},  # LLaMA-Factory: a JSON string
            {"messages": conv}]
    path = tmp_path / "tools.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (a, _), (b, _), (c, _) = D.load_sft_examples(path, tok, 1024)
    want = render(conv, tok, tools=[tool]).ids[:-1]  # what the server / run_agent show the model
    assert a == b == want and c == render(conv, tok).ids[:-1] and len(a) > len(c)
    assert '"name": "add"' in tok.decode(a)
    path.write_text(json.dumps({"messages": conv, "tools": "not json"}) + "\n")
    with pytest.raises(Exception, match="tools.jsonl:1: field 'tools' is a string but not JSON"):
        D.load_sft_examples(path, tok, 1024)
    path.write_text(json.dumps({"messages": conv, "tools": {"name": "add"}}) + "\n")
    with pytest.raises(Exception, match="tools.jsonl:1: field 'tools' must be a list"):
        D.load_sft_examples(path, tok, 1024)


def test_preference_forms():
    std = D.to_preference({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    assert std[0] == [{"role": "user", "content": "The sky is"}] and std[1][0]["role"] == "assistant"
    hh = D.to_preference({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"})
    assert hh[0] == [{"role": "user", "content": "hi"}] and hh[1][0]["content"] == "hello" and hh[2][0]["content"] == "go away"
    lf = D.to_preference({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
                          "rejected": {"from": "gpt", "value": "b"}})
    assert lf == ([{"role": "user", "content": "q"}], [{"role": "assistant", "content": "a"}],
                  [{"role": "assistant", "content": "b"}])


def test_real_shared_data_loads(shared_data, tok):
    assert len(D.load_sft_examples(shared_data / "instruct_alpaca_en", tok, 256, limit=20)) > 0
    assert len(D.load_preference_pairs(shared_data / "preference_dpo_en", tok, 256, limit=10)) > 0
    assert len(D.load_preference_pairs(shared_data / "hh_rlhf_harmless_test", tok, 256, limit=10)) > 0
    assert D.load_prompts(shared_data / "gsm8k" / "test.jsonl", limit=3)[0][1]["answer"]


def test_packing_and_batches_resume():
    ex = [([1, 2, 3], [2, 3, -100]), ([4, 5], [5, -100]), ([6, 7, 8, 9], [7, 8, 9, -100])]
    rows = D.pack(ex, 5)  # whole examples per row (tests/test_posttrain_packing.py: masks and positions)
    assert [r[0] for r in rows] == [[1, 2, 3, 4, 5], [6, 7, 8, 9]] and rows[0][2] == [0, 0, 0, 1, 1]
    data = D.SFTData(ex, 2, pad_id=0, seed=3)
    data.next_batch()
    state = data.state_dict()
    a = [data.next_batch() for _ in range(3)]
    data.load_state_dict(state)
    b = [data.next_batch() for _ in range(3)]
    assert all((x1 == x2).all() and (y1 == y2).all() for (x1, y1), (x2, y2) in zip(a, b))
    x, y = a[0]
    assert ((x == 0) <= (y == -100)).all()  # padding never carries a label
