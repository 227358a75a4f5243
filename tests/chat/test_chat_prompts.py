"""Prompt templates: parsing and escaping, missing/extra variable errors, shipped templates (Alpaca exact),
few-shot selection (deterministic), chain-of-thought answer extraction, self-consistency voting."""
from __future__ import annotations

import itertools

import pytest

from zerollm.chat.prompts import (COT_TRIGGER, PromptError, PromptTemplate, alpaca_prompt, chain_of_thought_prompt,
                                  extract_answer_text, few_shot_prompt, format_examples, list_templates,
                                  select_examples, self_consistency)

# tatsu-lab/stanford_alpaca train.py, PROMPT_DICT, verbatim
PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}

POOL = [{"question": "What is the capital of France?", "answer": "Paris"},
        {"question": "How many legs does a spider have?", "answer": "8"},
        {"question": "富士山の標高は？", "answer": "3776メートル"},
        {"question": "What is the capital of Japan?", "answer": "Tokyo"},
        {"question": "日本の首都は？", "answer": "東京"},
        {"question": "What color is the sky?", "answer": "blue"}]


def test_render_and_variables():
    t = PromptTemplate("Hi {name}, {greeting}! Bye {name}.")
    assert t.variables == ("name", "greeting")
    assert t.render(name="太郎", greeting=3) == "Hi 太郎, 3! Bye 太郎."


def test_escaping_and_values_are_not_reparsed():
    t = PromptTemplate('JSON: {{"a": {value}}} and {{{x}}}')
    assert t.variables == ("value", "x")
    assert t.render(value=1, x="{y}") == 'JSON: {"a": 1} and {{y}}'  # a value with braces stays literal


@pytest.mark.parametrize("bad", ["{a.b}", "{0}", "{x!r}", "{x:>5}", "{ x }", "a } b", "a { b", "{}"])
def test_bad_syntax_names_template_and_line(bad):
    with pytest.raises(PromptError, match=r"template t\.txt, line 2"):
        PromptTemplate("first line\n" + bad, "t.txt")


def test_missing_and_extra_variables(tmp_path):
    path = tmp_path / "greet.txt"
    path.write_text("Hello {name}, you are {age}.\n", encoding="utf-8")
    t = PromptTemplate.from_file(path)
    assert t.render(name="A", age=3) == "Hello A, you are 3."  # the editor's trailing newline is dropped
    with pytest.raises(PromptError) as e:
        t.render(name="A")
    assert "missing variable(s) age" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(PromptError) as e:
        t.render(name="A", age=3, nmae="typo")
    assert "extra variable(s) nmae" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(PromptError, match="missing variable.s. age.*extra variable.s. agee"):
        t.render(name="A", agee=3)


def test_shipped_templates():
    assert {"zero_shot", "few_shot", "chain_of_thought", "alpaca", "alpaca_no_input"} <= set(list_templates())
    assert PromptTemplate.from_name("zero_shot").render(task="Answer briefly.", question="2+2?") == \
        "Answer briefly.\n\nQuestion: 2+2?\nAnswer:"
    assert chain_of_thought_prompt("2+2?", task="Math.").endswith("Question: 2+2?\nAnswer: " + COT_TRIGGER)
    with pytest.raises(PromptError, match="no template named 'nope'"):
        PromptTemplate.from_name("nope")


def test_alpaca_exact():
    assert alpaca_prompt("Add the numbers.", "1 and 2") == \
        PROMPT_DICT["prompt_input"].format(instruction="Add the numbers.", input="1 and 2")
    assert alpaca_prompt("Say hello.") == PROMPT_DICT["prompt_no_input"].format(instruction="Say hello.")
    assert PromptTemplate.from_name("alpaca").variables == ("instruction", "input")
    from zerollm.posttrain.data import ALPACA_PROMPT  # the SFT data formatter agrees
    assert alpaca_prompt("I", "X") == ALPACA_PROMPT.format(
        ctx=", paired with an input that provides further context", instruction="I", input="### Input:\nX\n\n")


def test_select_random_is_deterministic_with_seed():
    a = select_examples(POOL, "anything", 3, "random", seed=7)
    assert a == select_examples(POOL, "anything", 3, "random", seed=7)
    assert len(a) == 3 and all(x in POOL for x in a) and len({id(x) for x in a}) == 3
    draws = {tuple(POOL.index(x) for x in select_examples(POOL, "q", 3, "random", seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    assert select_examples(POOL, "q", 99, "random") and len(select_examples(POOL, "q", 99, "random")) == len(POOL)
    with pytest.raises(ValueError, match="unknown selection strategy"):
        select_examples(POOL, "q", 2, "best")


def test_select_similar():
    got = select_examples(POOL, "What is the capital of Italy?", 2, "similar")
    assert [g["answer"] for g in got] == ["Paris", "Tokyo"]  # tie on score -> pool order
    assert select_examples(POOL, "フランスの首都は？", 1, "similar")[0]["answer"] == "東京"  # Japanese terms
    assert select_examples(POOL, "zzz", 2, "similar") == POOL[:2]  # no overlap -> pool order
    prompt = few_shot_prompt("How many legs does an ant have?", POOL, k=1, task="Answer briefly.")
    assert prompt == ("Answer briefly.\n\nQuestion: How many legs does a spider have?\nAnswer: 8\n\n"
                      "Question: How many legs does an ant have?\nAnswer:")
    with pytest.raises(PromptError, match="missing variable.s. answer"):
        format_examples([{"question": "q"}])


def test_extract_answer_text():
    assert extract_answer_text("3 + 4 = 7. Then 7 * 2 = 14. The answer is 14.") == "14"
    assert extract_answer_text("Therefore, the answer is 1,234.") == "1234"
    assert extract_answer_text("The answer is 3.5.") == "3.5"
    assert extract_answer_text("so x = 5\n#### 42") == "42"
    assert extract_answer_text("りんごは3個、みかんは5個。答えは8です。") == "8"
    assert extract_answer_text("Answer: Paris") == "Paris"
    assert extract_answer_text("first 3, then 9 remain") == "9"
    assert extract_answer_text("no idea") is None


def test_self_consistency_majority_and_tie_break():
    outputs = itertools.cycle(["... The answer is 12.", "The answer is 10.", "#### 12", "I am not sure",
                               "The answer is 10."])
    calls = []

    def stub(prompt):
        calls.append(prompt)
        return next(outputs)
    answer, votes = self_consistency(stub, "Q?", k=4)
    assert answer == "12" and votes == {"12": 2, "10": 1} and calls == ["Q?"] * 4
    assert list(votes) == ["12", "10"]
    # a tie (2 vs 2): the answer seen first wins, whatever the order of the counts
    seq = iter(["The answer is 10.", "The answer is 12.", "The answer is 12.", "The answer is 10."])
    assert self_consistency(lambda p: next(seq), "Q?", k=4) == ("10", {"10": 2, "12": 2})
    assert self_consistency(lambda p: "nothing", "Q?", k=3) == (None, {})
    with pytest.raises(ValueError):
        self_consistency(stub, "Q?", k=0)


def test_sampler_drives_the_engine_reproducibly(tiny_model, byte_tokenizer):
    from zerollm.chat.prompts import sampler

    model = tiny_model(vocab_size=256, n_layer=1, n_head=2, d_model=16)
    first = sampler(model, byte_tokenizer, temperature=1.0, max_new_tokens=5, seed=3)("Q: 1+1?")
    fn = sampler(model, byte_tokenizer, temperature=1.0, max_new_tokens=5, seed=3)
    samples = [fn("Q: 1+1?") for _ in range(3)]
    assert samples[0] == first and len(set(samples)) > 1  # call i uses seed + i
