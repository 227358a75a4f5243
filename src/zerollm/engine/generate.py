"""Generation for one prompt, through the `Engine` (a batch of one): token ids, streamed text, or text.

    generate(model, tok, ids, cfg)        -> new token ids
    stream(model, tok, ids, cfg)          -> TextStream: text pieces as they are produced
    generate_text(model, tok, ids, cfg, constraint=..., draft_model=..., stream=...)
                                          -> the `zerollm generate` stage: text, from whichever decoder the
                                             request needs (Engine, beam search or speculative decoding)

Streaming: token bytes go through an incremental UTF-8 decoder (a character split across tokens is emitted
once whole) and text that might be the start of a stop string is held back, so a stop string is never
emitted even when it spans several tokens (Engine._accept). engine/reference.py is the plain loop that
defines which tokens come out; tests check the Engine against it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Protocol, Sequence

import torch

from .beam import beam_search
from .config import GenerationConfig, first_stop, stop_ids
from .engine import Engine, Request
from .speculative import speculative_generate

__all__ = ["GenerationConfig", "TextStream", "generate", "stream", "generate_text"]


class TokenizerLike(Protocol):
    def token_bytes(self, id: int) -> bytes: ...
    def decode(self, ids: list[int]) -> str: ...


def _submit(model, tokenizer, prompt_ids, gen_cfg: GenerationConfig):
    """A one-request Engine sized for this prompt; returns the request's handle (nothing runs yet)."""
    if gen_cfg.num_return_sequences != 1 or gen_cfg.num_beams != 1:  # one sampled sequence, as documented
        gen_cfg = replace(gen_cfg, num_return_sequences=1, num_beams=1)
    ids = prompt_ids.view(-1).tolist() if isinstance(prompt_ids, torch.Tensor) else list(prompt_ids)
    engine = Engine(model, tokenizer, max_batch_size=1, max_len=len(ids) + max(gen_cfg.max_new_tokens, 1))
    return engine.submit(ids, gen_cfg)


class TextStream:
    """Iterator over the generated text pieces of one request. `finish_reason` ("stop" | "length", set at
    the end), `token_ids` (every generated id, without a stop token id) and `text` (all emitted text, which
    never includes a stop string) follow the request as it runs."""

    def __init__(self, handle):
        self.handle = handle  # an engine.RequestHandle
        self._pieces = handle.texts()

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)  # iterating drives the engine's steps

    def read(self) -> str:
        """Consume the rest of the stream and return the whole text."""
        for _ in self:
            pass
        return self.text

    @property
    def text(self) -> str:
        return self.handle.completions[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.handle.completions[0].token_ids

    @property
    def finish_reason(self) -> str | None:
        return self.handle.completions[0].finish_reason


def stream(model, tokenizer: TokenizerLike, prompt_ids: Sequence[int] | torch.Tensor,
           gen_cfg: GenerationConfig | None = None) -> TextStream:
    """Generate from `prompt_ids`, yielding text pieces as they are produced (see `TextStream`)."""
    return TextStream(_submit(model, tokenizer, prompt_ids, gen_cfg or GenerationConfig()))


def generate(model, tokenizer: TokenizerLike | None, prompt_ids: Sequence[int] | torch.Tensor,
             gen_cfg: GenerationConfig | None = None) -> list[int]:
    """The new token ids (prompt excluded). A stop token id ends generation and is not included; when a stop
    string matches, the ids end with the token that completed it (`stream(...).text` gives the text without
    the stop string). `tokenizer` is only used for stop strings and the default eos id (may be None)."""
    gen_cfg = gen_cfg or GenerationConfig()
    if gen_cfg.num_beams > 1:  # deterministic beam search; returns the best beam
        return beam_search(model, prompt_ids, gen_cfg, tokenizer)[0]
    if [s for s in gen_cfg.stop_strings if s]:
        if tokenizer is None:
            raise ValueError("stop_strings need a tokenizer")
    else:  # no text needed: resolve the default eos id here and let the engine skip decoding
        gen_cfg = replace(gen_cfg, stop_token_ids=sorted(stop_ids(gen_cfg, tokenizer)))
        tokenizer = None
    return _submit(model, tokenizer, prompt_ids, gen_cfg).result().token_ids


def generate_text(model, tokenizer, prompt_ids: Sequence[int], gen_cfg: GenerationConfig, *, constraint=None,
                  draft_model=None, draft_tokens: int = 4, stream: bool = False) -> str | list[str] | Iterator[str]:
    """Text generated after `prompt_ids` (an empty prompt starts a fresh document: eos, else bos), through
    the decoder the request needs. Stop ids come from gen_cfg.stop_token_ids (None: the tokenizer's eos).

    draft_model: speculative decoding (engine/speculative.py; greedy gives the target's own tokens).
    num_beams > 1: beam search (engine/beam.py).
    constraint / num_return_sequences > 1 / logprobs: whole completions from the Engine (logprobs as a
    token<TAB>logprob table under each text).
    num_return_sequences > 1 (sampled or beams): a list of texts, one per sequence, best beam first.
    Otherwise the Engine streams: stream=True returns a `TextStream`, else the whole text. The other
    decoders produce whole texts; with stream=True they come back as one piece."""
    ids = list(prompt_ids) or [tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.bos_id]
    if draft_model is not None:
        text = _speculative_text(model, draft_model, tokenizer, ids, gen_cfg, draft_tokens)
    elif gen_cfg.num_beams > 1:
        texts = [tokenizer.decode(s) for s in beam_search(model, ids, gen_cfg, tokenizer)]
        if gen_cfg.num_return_sequences > 1:
            return texts
        text = texts[0]
    elif constraint is not None or gen_cfg.num_return_sequences > 1 or gen_cfg.logprobs is not None:
        return _completions_text(model, tokenizer, ids, gen_cfg, constraint)
    else:
        text_stream = TextStream(_submit(model, tokenizer, ids, gen_cfg))
        return text_stream if stream else text_stream.read()  # read(): stop strings already cut
    return iter([text]) if stream else text


def _speculative_text(model, draft_model, tokenizer, ids, gen_cfg, draft_tokens: int) -> str:
    if draft_model.cfg.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"the draft model has vocabulary {draft_model.cfg.vocab_size}, the target has "
                         f"{model.cfg.vocab_size}: speculative decoding needs the same tokenizer")
    text = tokenizer.decode(speculative_generate(model, draft_model, ids, gen_cfg, num_draft=draft_tokens,
                                                 tokenizer=tokenizer))
    cut = first_stop(text, gen_cfg.stop_strings or [])
    return text if cut is None else text[:cut]


def _completions_text(model, tokenizer, ids, gen_cfg, constraint) -> str | list[str]:
    """Several sequences, logprobs or constrained output: whole completions from the Engine, as text (a list
    of texts when num_return_sequences > 1)."""
    engine = Engine(model, tokenizer, max_batch_size=gen_cfg.num_return_sequences)
    out = []
    for c in engine.submit(Request(ids, gen_cfg, constraint=constraint)).results():
        text = c.text
        if c.logprobs:
            tops = c.top_logprobs or [[]] * len(c.token_ids)
            text += "\n" + "\n".join(
                f"{tokenizer.decode([t])!r}\t{lp:.4f}"
                + ("\t" + " ".join(f"{tokenizer.decode([i])!r}:{v:.3f}" for i, v in top) if c.top_logprobs else "")
                for t, lp, top in zip(c.token_ids, c.logprobs, tops))
        out.append(text)
    return out if gen_cfg.num_return_sequences > 1 else out[0]
