"""A small chain, as the books build with LangChain: prompt template → model → output parser, joined with `|`.

    chain = PromptTemplate("Explain {topic} in one sentence.") | LLM(model, tokenizer, max_new_tokens=40) \
            | StrOutputParser()
    chain.invoke({"topic": "attention"})          # → str
    for piece in chain.stream({"topic": "attention"}):   # text as the model produces it
        print(piece, end="")

Templates are chat.prompts.PromptTemplate (the one template parser) made chain steps. Every step is a
`Runnable`: `invoke(x)` maps an input to an output, `stream(x)` yields output pieces (a step
that cannot stream yields its whole output once), and `a | b` is the sequence (a plain function is wrapped
in `RunnableLambda`). `LLM` generates through the engine (engine/generate.py: the Engine streams the text);
a `ChatPromptTemplate` produces messages, which `LLM` renders with the model's chat format (chat/format.py,
including the plain "User:/Assistant:" fallback for base models). Parsers never evaluate model text: JSON is
read with json.loads.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, Iterator

from zerollm.engine.generate import GenerationConfig, stream as engine_stream

from . import prompts
from .format import prompt_ids, resolve_template, stop_strings, stop_token_ids


class Runnable:
    streams = False  # True: `stream` yields pieces as they are produced (the model)

    def invoke(self, x: Any) -> Any:
        raise NotImplementedError

    def stream(self, x: Any) -> Iterator[Any]:
        yield self.invoke(x)

    def transform(self, pieces: Iterable[Any]) -> Iterator[Any]:
        """This step applied to a streamed input: by default, wait for the whole input, then invoke."""
        items = list(pieces)
        whole = "".join(items) if all(isinstance(p, str) for p in items) else (items[-1] if items else None)
        yield from self.stream(whole)

    def __or__(self, other) -> "Chain":
        return Chain([self, as_runnable(other)])

    def __ror__(self, other) -> "Chain":
        return Chain([as_runnable(other), self])


def as_runnable(x) -> Runnable:
    if isinstance(x, Runnable):
        return x
    if callable(x):
        return RunnableLambda(x)
    raise TypeError(f"cannot chain a {type(x).__name__}: expected a Runnable or a function")


class RunnableLambda(Runnable):
    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn

    def invoke(self, x):
        return self.fn(x)


class Chain(Runnable):
    """Steps run in order; `stream` streams through the last step that can stream (the model) and lets the
    steps after it transform the pieces (StrOutputParser passes them on as they come)."""

    def __init__(self, steps: list[Runnable]):
        self.steps = []
        for s in steps:
            self.steps += s.steps if isinstance(s, Chain) else [s]

    def invoke(self, x):
        for s in self.steps:
            x = s.invoke(x)
        return x

    def stream(self, x):
        last = max((i for i, s in enumerate(self.steps) if s.streams), default=None)
        if last is None:
            yield self.invoke(x)
            return
        for s in self.steps[:last]:
            x = s.invoke(x)
        pieces = self.steps[last].stream(x)
        for s in self.steps[last + 1:]:
            pieces = s.transform(pieces)
        yield from pieces


class PromptTemplate(prompts.PromptTemplate, Runnable):
    """chat.prompts.PromptTemplate (the one template parser: `{name}` variables, `{{`/`}}` literal braces,
    missing variables named in the error) as a chain step: `invoke({"question": ...})` → the prompt text.
    Keys the template does not use are ignored (a dict flowing through a chain may carry more)."""

    @classmethod
    def from_template(cls, template: str) -> "PromptTemplate":
        return cls(template)

    @property
    def input_variables(self) -> list[str]:
        return sorted(self.variables)

    def format(self, **values) -> str:
        return self.render(**{k: v for k, v in values.items() if k in self.variables})

    def invoke(self, x) -> str:
        if not isinstance(x, dict):  # one variable: the value itself
            if len(self.variables) != 1:
                raise ValueError(f"pass a dict with {self.input_variables}")
            x = {self.variables[0]: x}
        return self.format(**x)


class ChatPromptTemplate(Runnable):
    """Messages with templated contents: `ChatPromptTemplate.from_messages([("system", "You are {role}."),
    ("user", "{question}")])`; invoke gives OpenAI-style messages for `LLM`."""

    def __init__(self, messages: list[tuple[str, str]]):
        self.messages = [(role, PromptTemplate(text)) for role, text in messages]
        self.input_variables = sorted({v for _, t in self.messages for v in t.variables})

    @classmethod
    def from_messages(cls, messages: list[tuple[str, str]]) -> "ChatPromptTemplate":
        return cls(messages)

    def invoke(self, x) -> list[dict]:
        if not isinstance(x, dict):
            if len(self.input_variables) != 1:
                raise ValueError(f"pass a dict with {self.input_variables}")
            x = {self.input_variables[0]: x}
        return [{"role": role, "content": t.format(**x)} for role, t in self.messages]


class LLM(Runnable):
    """A model as a chain step: text (a completion prompt) or messages (a chat, in the model's chat format)
    in, generated text out. Keywords are GenerationConfig's (default: greedy, 256 new tokens)."""
    streams = True

    def __init__(self, model, tokenizer, template: str | None = None, stop_ids=(), **gen_kwargs):
        self.model, self.tokenizer, self.template, self.stop_ids = model, tokenizer, template, list(stop_ids)
        self.gen_kwargs = {"temperature": 0.0, **gen_kwargs}

    def _request(self, x):
        if isinstance(x, str):
            ids = self.tokenizer.encode(x)
            return ids, GenerationConfig(**self.gen_kwargs)
        template = resolve_template(self.tokenizer, self.template)
        ids = prompt_ids(list(x), self.tokenizer, template=template)
        cfg = {"stop_token_ids": stop_token_ids(self.tokenizer, self.stop_ids),
               "stop_strings": stop_strings(template), **self.gen_kwargs}
        return ids, GenerationConfig(**cfg)

    def stream(self, x) -> Iterator[str]:
        ids, cfg = self._request(x)
        if not ids:
            ids = [self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id]
        yield from engine_stream(self.model, self.tokenizer, ids, cfg)

    def invoke(self, x) -> str:
        return "".join(self.stream(x))


class StrOutputParser(Runnable):
    """The model's text, whitespace-trimmed (streamed pieces pass through unchanged)."""

    def invoke(self, x) -> str:
        return str(x).strip()

    def stream(self, x):
        yield self.invoke(x)

    def transform(self, pieces):
        yield from pieces


class JsonOutputParser(Runnable):
    """The first JSON object or array in the text (a ```json fence is fine), parsed with json.loads."""

    def invoke(self, x):
        text = str(x)
        fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
        text = fenced.group(1) if fenced else text
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if not starts:
            raise ValueError(f"no JSON in the model's output: {str(x)[:80]!r}")
        try:
            value, _ = json.JSONDecoder().raw_decode(text[min(starts):])
        except json.JSONDecodeError as e:
            raise ValueError(f"the model's output is not valid JSON ({e.msg}): {str(x)[:80]!r}") from None
        return value


class CommaSeparatedListOutputParser(Runnable):
    def invoke(self, x) -> list[str]:
        return [p.strip() for p in str(x).split(",") if p.strip()]


__all__ = ["Runnable", "RunnableLambda", "Chain", "PromptTemplate", "ChatPromptTemplate", "LLM", "StrOutputParser",
           "JsonOutputParser", "CommaSeparatedListOutputParser", "as_runnable"]
