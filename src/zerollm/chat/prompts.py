"""Prompt templates with named variables, few-shot example selection, chain-of-thought and self-consistency.

**Template syntax** (the whole syntax; nothing is ever evaluated):

    {name}      a variable; `name` is a Python identifier (letters, digits, _; not starting with a digit)
    {{  }}      a literal `{` / `}`
    anything else between braces ({a.b}, {0}, {x!r}, {x:>5}), or a lone `{` / `}`, is an error that names
    the template and the line

`PromptTemplate.render(**values)` inserts `str(value)` for each variable. A missing variable and an
extra one (given but not used by the template, usually a typo) are both errors naming the variables and
the template file. Inserted values are never re-parsed, so a value may contain braces.

Template files are UTF-8 text; the one trailing newline that editors add is dropped (write two to end a
prompt with a newline). Shipped templates (`PromptTemplate.from_name(name)`, `list_templates()`):

    zero_shot          {task} {question}                  -> "...Question: ...\\nAnswer:"
    few_shot           {task} {examples} {question}       (examples: format_examples(select_examples(...)))
    chain_of_thought   {task} {question}                  -> ends "Answer: Let's think step by step."
    alpaca             {instruction} {input}              tatsu-lab/stanford_alpaca PROMPT_DICT["prompt_input"]
    alpaca_no_input    {instruction}                      PROMPT_DICT["prompt_no_input"]; alpaca_prompt() picks

**Few-shot selection** (`select_examples`): "random" (a seeded sample of the pool) or "similar" (the
examples whose text scores highest under BM25 against the query, zerollm.rag.bm25, Japanese-aware; ties
and no-overlap cases fall back to pool order, so the choice is deterministic).

**Chain of thought**: prompting the model to write its reasoning before the answer (Wei et al. 2022,
"Chain-of-Thought Prompting Elicits Reasoning in Large Language Models", with worked examples; Kojima et al.
2022, "Large Language Models are Zero-Shot Reasoners": the trigger "Let's think step by step." alone, then
"Therefore, the answer is" to extract the answer). `extract_answer_text` pulls the final answer out of a
reasoning text, as a normalized string.

**Self-consistency** (Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in Language
Models"): sample k reasoning paths (temperature > 0), extract each one's answer, return the majority
answer. Ties go to the answer that appeared first among the samples, so the result is a pure function of
the samples.
"""
from __future__ import annotations

import collections
import random
import re
from pathlib import Path
from typing import Callable, Sequence

from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig
from zerollm.errors import ZeroLLMError

TEMPLATE_DIR = Path(__file__).parent / "templates"
COT_TRIGGER = "Let's think step by step."  # Kojima et al. 2022, Table 4's best zero-shot trigger
ANSWER_TRIGGER = "Therefore, the answer is"  # Kojima et al. 2022, answer extraction (second stage)
EXAMPLE_FORMAT = "Question: {question}\nAnswer: {answer}"

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PromptError(ZeroLLMError):
    """A template that cannot be parsed, or render() called with missing or extra variables."""


def _parse(text: str, source: str) -> list[tuple[str, str]]:
    """The template as ("text", literal) and ("var", name) parts."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(("text", text[pos:m.start()]))
        tok, name = m.group(), m.group(1)
        if tok in ("{{", "}}"):
            parts.append(("text", tok[0]))
        elif name is not None and _IDENT.match(name):
            parts.append(("var", name))
        else:
            line = text.count("\n", 0, m.start()) + 1
            what = f"{tok!r} is not a variable (use {{name}} with an identifier)" if name is not None else \
                f"lone {tok!r} (write {tok * 2} for a literal brace)"
            raise PromptError(f"template {source}, line {line}: {what}")
        pos = m.end()
    if pos < len(text):
        parts.append(("text", text[pos:]))
    return parts


class PromptTemplate:
    """A prompt with `{name}` variables. `variables`: the names, in order of first use."""

    def __init__(self, text: str, source: str = "<string>"):
        self.text, self.source = text, source
        self._parts = _parse(text, source)
        self.variables = tuple(dict.fromkeys(v for kind, v in self._parts if kind == "var"))

    @classmethod
    def from_file(cls, path: str | Path) -> "PromptTemplate":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PromptError(f"cannot read template {path}: {e}") from None
        return cls(text[:-1] if text.endswith("\n") else text, str(path))

    @classmethod
    def from_name(cls, name: str) -> "PromptTemplate":
        """A shipped template (see `list_templates()`)."""
        path = TEMPLATE_DIR / f"{name}.txt"
        if not path.is_file():
            raise PromptError(f"no template named {name!r}; shipped templates: {', '.join(list_templates())}")
        return cls.from_file(path)

    def render(self, **values) -> str:
        missing = [v for v in self.variables if v not in values]
        extra = sorted(set(values) - set(self.variables))
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"missing variable(s) {', '.join(missing)}")
            if extra:
                problems.append(f"extra variable(s) {', '.join(extra)} (not used by the template)")
            raise PromptError(f"template {self.source}: {'; '.join(problems)}; it uses: "
                              f"{', '.join(self.variables) or '(no variables)'}")
        return "".join(str(values[x]) if kind == "var" else x for kind, x in self._parts)

    def __repr__(self) -> str:
        return f"PromptTemplate({self.source!r}, variables={self.variables})"


def list_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


def render(name: str, **values) -> str:
    """Shorthand: `render("zero_shot", task=..., question=...)`."""
    return PromptTemplate.from_name(name).render(**values)


# ---------------------------------------------------------------------------------------------------------
# Alpaca

def alpaca_prompt(instruction: str, input: str = "") -> str:  # noqa: A002 (the dataset's field name)
    """The Stanford Alpaca prompt (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT): the "prompt_input"
    form when `input` is non-empty, else "prompt_no_input". Ends with "### Response:" (no newline)."""
    if input:
        return PromptTemplate.from_name("alpaca").render(instruction=instruction, input=input)
    return PromptTemplate.from_name("alpaca_no_input").render(instruction=instruction)


# ---------------------------------------------------------------------------------------------------------
# few-shot

def example_text(example) -> str:
    """The text an example is matched on: a string itself, else its question/input/instruction field,
    else all its string values joined."""
    if isinstance(example, str):
        return example
    for key in ("question", "input", "instruction", "query", "text"):
        if isinstance(example.get(key), str) and example[key]:
            return example[key]
    return " ".join(v for v in example.values() if isinstance(v, str))


def select_examples(pool: Sequence, query: str, k: int, strategy: str = "random", seed: int = 0,
                    key: Callable[[object], str] = example_text) -> list:
    """k examples from `pool` for `query`. "random": a sample drawn with `random.Random(seed)` (same seed,
    same pool -> same examples). "similar": the k highest BM25 scores of `key(example)` against the query,
    best first; ties and examples sharing no term with the query are ordered by their position in the pool.
    k larger than the pool returns the whole pool (in the strategy's order)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = min(k, len(pool))
    if strategy == "random":
        return [pool[i] for i in random.Random(seed).sample(range(len(pool)), k)]
    if strategy == "similar":
        from zerollm.rag.bm25 import BM25

        if k == 0:
            return []
        scores = BM25().index([key(e) for e in pool]).scores(query)
        order = sorted(range(len(pool)), key=lambda i: (-float(scores[i]), i))
        return [pool[i] for i in order[:k]]
    raise ValueError(f"unknown selection strategy {strategy!r}; use 'random' or 'similar'")


def format_examples(examples: Sequence[dict], fmt: str = EXAMPLE_FORMAT, sep: str = "\n\n") -> str:
    """Examples rendered with `fmt` (a template string); an example's other fields are ignored, a missing
    one is an error."""
    t = PromptTemplate(fmt, "<example format>")
    return sep.join(t.render(**{v: e[v] for v in t.variables if v in e}) for e in examples)


def few_shot_prompt(question: str, pool: Sequence[dict], k: int = 3, task: str = "", strategy: str = "similar",
                    seed: int = 0, fmt: str = EXAMPLE_FORMAT) -> str:
    """The `few_shot` template with k examples selected from `pool` for `question`."""
    examples = format_examples(select_examples(pool, question, k, strategy, seed), fmt)
    return PromptTemplate.from_name("few_shot").render(task=task, examples=examples, question=question)


# ---------------------------------------------------------------------------------------------------------
# chain of thought

def chain_of_thought_prompt(question: str, task: str = "") -> str:
    """Zero-shot CoT (Kojima et al. 2022): the question, then "Answer: Let's think step by step."."""
    return PromptTemplate.from_name("chain_of_thought").render(task=task, question=question)


def answer_extraction_prompt(cot_prompt: str, reasoning: str) -> str:
    """Kojima et al.'s second stage: the reasoning the model wrote, then "Therefore, the answer is"."""
    return f"{cot_prompt} {reasoning.strip()}\n{ANSWER_TRIGGER}"


_ANSWER_PATTERNS = [
    re.compile(r"answer is\s*:?\s*(.+?)(?:\.(?=\s|$)|\n|$)", re.IGNORECASE),
    re.compile(r"####\s*(.+?)\s*(?:\n|$)"),  # GSM8K's final-answer marker
    re.compile(r"答え(?:は|:|：)\s*(.+?)(?:[。\n]|です|$)"),
    re.compile(r"^\s*answer\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE),
]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_answer(ans: str) -> str:
    """Strip spaces, markdown bold, a trailing period and `$`; "1,234" -> "1234"."""
    ans = ans.strip().strip("*").strip().rstrip(".。").strip().lstrip("$")
    return ans.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", ans) else ans


def extract_answer_text(text: str) -> str | None:
    """The final answer in a reasoning text: the last "the answer is X", "#### X", "答えはX" or "Answer: X";
    else the last number; else None."""
    for pat in _ANSWER_PATTERNS:
        found = [m.group(1) for m in pat.finditer(text)]
        if found and normalize_answer(found[-1]):
            return normalize_answer(found[-1])
    nums = _NUMBER.findall(text)
    return normalize_answer(nums[-1]) if nums else None


# ---------------------------------------------------------------------------------------------------------
# self-consistency

def self_consistency(generate_fn: Callable[[str], str], prompt: str, k: int = 5,
                     extract_answer: Callable[[str], str | None] = extract_answer_text) -> tuple[str | None, dict]:
    """Majority vote over k sampled generations (Wang et al. 2023). `generate_fn(prompt) -> text` must
    sample (temperature > 0), e.g. `sampler(model, tokenizer)`. Returns (answer, votes) with votes
    {answer: count}, most votes first; samples with no extractable answer do not vote; ties go to the
    answer seen first. (None, {}) when no sample had an answer."""
    if k < 1:
        raise ValueError(f"self-consistency needs k >= 1 samples, got {k}")
    return majority_vote([extract_answer(generate_fn(prompt)) for _ in range(k)])


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, dict]:
    """The vote of self_consistency over already extracted answers (None = no answer, does not vote):
    (answer with most votes, ties to the first seen; {answer: count}, most votes first), or (None, {})."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None, {}
    first = {}
    for i, a in enumerate(answers):
        first.setdefault(a, i)
    ranked = sorted(counts, key=lambda a: (-counts[a], first[a]))
    return ranked[0], {a: counts[a] for a in ranked}


def sampler(model, tokenizer, temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0,
            **gen_kwargs) -> Callable[[str], str]:
    """A `generate_fn` for self_consistency: text in, sampled text out, through one Engine. Call i uses
    seed + i, so a run of k samples is reproducible and the samples differ."""
    calls = [0]
    engine = Engine(model, tokenizer, max_batch_size=1)

    def generate_fn(prompt: str) -> str:
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + calls[0],
                               **gen_kwargs)
        calls[0] += 1
        return tokenizer.decode(engine.generate([tokenizer.encode(prompt)], cfg)[0][0].token_ids)

    return generate_fn
