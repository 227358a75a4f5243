"""Answer a question from retrieved chunks, with numbered citations to the chunks used.

    question ──Retriever.search──▶ hits ──build_prompt (as many whole passages as fit the context)──▶
        system: answer from the numbered passages, cite them as [1], [2]
        user:   [1] (source) passage ... [n] ...  Question: ...
    ──model (ChatML via chat.format.prompt_ids)──▶ answer text; cited numbers → sources

A question that alone does not fit the model's context is refused with a clear message; passages that do
not fit are dropped from the end (lowest ranked first), never cut mid-sentence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from zerollm.chat.format import prompt_ids, stop_token_ids
from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig

from . import RAGError

SYSTEM = ("Answer the question using only the numbered passages. Cite the passages you use as [1], [2]. "
          "If the passages do not contain the answer, say so.")


@dataclass
class Answer:
    text: str
    citations: list[dict] = field(default_factory=list)  # {"n", "source", "heading", "text"} of cited passages
    passages: list[dict] = field(default_factory=list)  # every passage given to the model

    def format(self) -> str:
        lines = [self.text.strip() or "(no answer)"]
        if self.citations:
            lines.append("")
            lines += [f"[{c['n']}] {c['source']}" + (f" — {c['heading']}" if c["heading"] else "")
                      for c in self.citations]
        return "\n".join(lines)


def _passage(n: int, hit) -> str:
    return f"[{n}] ({hit.chunk.source}) {hit.chunk.text}"


def build_messages(question: str, hits, tokenizer, budget: int, template: str | None = None
                   ) -> tuple[list[dict], list]:
    """Chat messages with as many passages as fit in `budget` tokens, and the hits used."""
    def msgs(used):
        body = "\n\n".join(_passage(i, h) for i, h in enumerate(used, 1))
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": (body + "\n\n" if body else "") + f"Question: {question}"}]

    if len(prompt_ids(msgs([]), tokenizer, template=template)) > budget:
        raise RAGError(f"the question is too long for the model's context ({budget} tokens for the prompt); "
                       "shorten it")
    used = list(hits)
    while used and len(prompt_ids(msgs(used), tokenizer, template=template)) > budget:
        used.pop()
    return msgs(used), used


def answer(question: str, retriever, model, tokenizer, k: int = 4, mode: str = "auto",
           max_new_tokens: int = 200, temperature: float = 0.0, stream=None, template: str | None = None) -> Answer:
    """Retrieve, prompt the model with numbered passages, and return its answer with citations.
    `stream`: optional callback receiving text pieces as they are generated; `template`: the model's own chat
    template (loading.Loaded.chat_template; None = ChatML)."""
    ctx = model.cfg.max_seq_len
    if max_new_tokens >= ctx:
        raise RAGError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a {ctx}-token context")
    hits = retriever.search(question, k=k, mode=mode)
    messages, used = build_messages(question, hits, tokenizer, ctx - max_new_tokens, template)
    ids = prompt_ids(messages, tokenizer, template=template)
    stops = stop_token_ids(tokenizer)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, stop_token_ids=stops)
    pieces = []
    for piece in Engine(model, tokenizer, max_batch_size=1).submit(ids, gen).texts():
        pieces.append(piece)
        if stream:
            stream(piece)
    text = "".join(pieces)
    passages = [{"n": i, "source": h.chunk.source, "heading": h.chunk.heading, "text": h.chunk.text}
                for i, h in enumerate(used, 1)]
    cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", text) if 1 <= int(n) <= len(used)})
    return Answer(text, [passages[n - 1] for n in cited], passages)
