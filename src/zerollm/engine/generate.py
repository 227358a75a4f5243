"""Autoregressive generation for one prompt: prefill once, then decode token by token with a KV cache.

    prompt ids ──prefill (one forward, T = len(prompt))──▶ logits of the last position
        └─▶ loop: sample_next ─▶ stop id? ─▶ yield id ─▶ forward(1 token, cache) ─▶ logits ...

`generate()` returns the new token ids; `stream()` returns a `TextStream` that yields text pieces as soon
as they are complete UTF-8 (token bytes go through an incremental decoder, so a character split across
tokens is emitted once whole) and holds back any text that might be the start of a stop string, so a stop
string is never emitted even when it spans several tokens.

Finish reasons: "stop" (a stop token id or stop string) or "length" (max_new_tokens reached, or the model's
context window is full: we stop rather than slide the window, because a sliding window would silently
change what the model conditions on; the chat layer truncates history instead).

Per-token cost is one forward of one token plus one host sync (`int(next_id)`, needed to test for stop
ids). The output projection runs on the last position only, also during prefill.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import torch

from ..model.kv_cache import KVCache
from .sampling import needs_history, sample_next


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int | None = None  # None or 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; applies to prompt and generated tokens (as HF)
    stop_token_ids: list[int] | None = None  # None = the tokenizer's eos_id (if it has one); [] = none
    stop_strings: list[str] = field(default_factory=list)
    seed: int | None = None  # None = torch's global RNG
    min_p: float = 0.0  # 0 = off; keep tokens with p >= min_p * p_max (Nguyen et al. 2024)
    presence_penalty: float = 0.0  # OpenAI-style, over generated tokens
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0  # 0 = off; as HF (prompt + generated)
    logit_bias: dict[int, float] | None = None
    logprobs: int | None = None  # Engine: None = off; 0 = chosen token's logprob; k = also the top k
    num_return_sequences: int = 1  # Engine / beam search
    num_beams: int = 1  # > 1: beam search (engine/beam.py)
    length_penalty: float = 1.0  # beam search: score = sum logprob / length ** length_penalty (as HF)
    early_stopping: bool | str = False  # beam search: True / False / "never" (as HF)

    def __post_init__(self) -> None:
        if isinstance(self.stop_strings, str):  # a lone string, not a list of one-character stops
            self.stop_strings = [self.stop_strings]
        if isinstance(self.stop_token_ids, int):
            self.stop_token_ids = [self.stop_token_ids]
        for name, ok in (("max_new_tokens", self.max_new_tokens >= 0), ("temperature", self.temperature >= 0),
                         ("top_k", self.top_k is None or self.top_k >= 0), ("top_p", 0 < self.top_p <= 1),
                         ("repetition_penalty", self.repetition_penalty > 0), ("min_p", 0 <= self.min_p <= 1),
                         ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0),
                         ("num_return_sequences", self.num_return_sequences >= 1),
                         ("num_beams", self.num_beams >= 1),
                         ("logprobs", self.logprobs is None or self.logprobs >= 0)):
            if not ok:
                raise ValueError(f"GenerationConfig.{name}={getattr(self, name)!r} is out of range")


class TokenizerLike(Protocol):
    def token_bytes(self, id: int) -> bytes: ...
    def decode(self, ids: list[int]) -> str: ...


def _stop_ids(gen_cfg: GenerationConfig, tokenizer) -> frozenset[int]:
    if gen_cfg.stop_token_ids is not None:
        return frozenset(int(i) for i in gen_cfg.stop_token_ids)
    eos = getattr(tokenizer, "eos_id", None)
    return frozenset() if eos is None else frozenset([eos])


def iter_tokens(model, prompt_ids: Sequence[int] | torch.Tensor, gen_cfg: GenerationConfig,
                stop_ids: frozenset[int] = frozenset()) -> Iterator[int]:
    """Yield new token ids one by one; the generator's return value is the finish reason.

    The model runs in eval mode and under `torch.inference_mode()` for each step only (never across a
    `yield`, so the caller's code between tokens runs in its normal autograd mode).
    """
    device = next(model.parameters()).device
    idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).view(1, -1)  # (1, P)
    P, ctx = idx.shape[1], model.cfg.max_seq_len
    if P == 0:
        raise ValueError("generation needs at least one prompt token (e.g. a BOS token)")
    if P > ctx:
        raise ValueError(f"prompt has {P} tokens but the model's context window is {ctx}")
    return _token_loop(model, idx, gen_cfg, stop_ids)  # checked eagerly above, run lazily below


def _token_loop(model, idx: torch.Tensor, gen_cfg: GenerationConfig, stop_ids: frozenset[int]) -> Iterator[int]:
    device, P = idx.device, idx.shape[1]
    if gen_cfg.max_new_tokens <= 0:
        return "length"
    generator = None
    if gen_cfg.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(gen_cfg.seed)
    penalize = needs_history(gen_cfg)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # the last token produced is never fed back, so P + max_new - 1 slots suffice
            cache = KVCache.for_model(model, batch_size=1, max_len=max(P, P + gen_cfg.max_new_tokens - 1))
            seq = torch.empty(1, P + gen_cfg.max_new_tokens, dtype=torch.long, device=device) if penalize else None
            if penalize:
                seq[:, :P] = idx
            hidden = model(idx, cache=cache, return_hidden=True)  # (1, P, D) prefill
            logits = model.logits(hidden[:, -1])  # (1, V)
        n = 0
        while True:
            with torch.inference_mode():
                next_id = sample_next(logits, generator, gen_cfg, seq[:, :P + n] if penalize else None, P)  # (1,)
                tok = int(next_id)  # the one host sync per token
            if tok in stop_ids:
                return "stop"
            yield tok
            n += 1
            if n >= gen_cfg.max_new_tokens or cache.pos >= cache.max_len:
                return "length"
            with torch.inference_mode():
                if penalize:
                    seq[:, P + n - 1] = next_id
                hidden = model(next_id.view(1, 1), cache=cache, return_hidden=True)  # (1, 1, D)
                logits = model.logits(hidden[:, -1])  # (1, V)
    finally:
        model.train(was_training)


def _first_stop(text: str, stop_strings: Sequence[str]) -> int | None:
    """Index of the earliest stop-string occurrence in text, or None."""
    hits = [i for i in (text.find(s) for s in stop_strings if s) if i >= 0]
    return min(hits) if hits else None


def _partial_stop_len(text: str, stop_strings: Sequence[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of some stop string (must be held back:
    the next tokens may complete the stop string)."""
    best = 0
    for s in stop_strings:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class TextStream:
    """Iterator over generated text pieces. After iteration: `finish_reason` ("stop" | "length"),
    `token_ids` (every generated id, without a stop token id) and `text` (all emitted text, which never
    includes a stop string)."""

    def __init__(self, tokens: Iterator[int], tokenizer: TokenizerLike, stop_strings: Sequence[str] = ()):
        self.tokenizer, self.stop_strings = tokenizer, [s for s in stop_strings if s]
        self.token_ids: list[int] = []
        self.finish_reason: str | None = None
        self.text = ""
        self._pieces = self._run(tokens)

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def read(self) -> str:
        """Consume the rest of the stream and return the whole text."""
        for _ in self:
            pass
        return self.text

    def _emit(self, piece: str) -> str:
        self.text += piece
        return piece

    def _run(self, tokens: Iterator[int]) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held = ""  # decoded text not yet emitted, because it might be the start of a stop string
        while True:
            try:
                tok = next(tokens)
            except StopIteration as done:
                self.finish_reason = done.value
                break
            self.token_ids.append(tok)
            held += decoder.decode(self.tokenizer.token_bytes(tok))
            cut = _first_stop(held, self.stop_strings) if self.stop_strings else None
            if cut is not None:
                tokens.close()  # stops the model loop (and restores the model's train/eval mode)
                self.finish_reason = "stop"
                if cut:
                    yield self._emit(held[:cut])
                return
            keep = _partial_stop_len(held, self.stop_strings) if self.stop_strings else 0
            piece, held = held[:len(held) - keep], held[len(held) - keep:]
            if piece:
                yield self._emit(piece)
        held += decoder.decode(b"", final=True)  # a dangling partial character becomes U+FFFD
        cut = _first_stop(held, self.stop_strings) if self.stop_strings else None
        if cut is not None:
            held, self.finish_reason = held[:cut], "stop"
        if held:
            yield self._emit(held)


def stream(model, tokenizer: TokenizerLike, prompt_ids: Sequence[int] | torch.Tensor,
           gen_cfg: GenerationConfig | None = None) -> TextStream:
    """Generate from `prompt_ids`, yielding text pieces as they are produced (see `TextStream`)."""
    gen_cfg = gen_cfg or GenerationConfig()
    tokens = iter_tokens(model, prompt_ids, gen_cfg, _stop_ids(gen_cfg, tokenizer))
    return TextStream(tokens, tokenizer, gen_cfg.stop_strings)


def generate(model, tokenizer: TokenizerLike | None, prompt_ids: Sequence[int] | torch.Tensor,
             gen_cfg: GenerationConfig | None = None) -> list[int]:
    """The new token ids (prompt excluded). A stop token id ends generation and is not included; when a stop
    string matches, the ids end with the token that completed it (`stream(...).text` gives the text without
    the stop string). `tokenizer` is only used for stop strings and the default eos id (may be None)."""
    gen_cfg = gen_cfg or GenerationConfig()
    if gen_cfg.num_beams > 1:  # deterministic beam search; returns the best beam
        from .beam import beam_search
        return beam_search(model, prompt_ids, gen_cfg, tokenizer)[0]
    tokens = iter_tokens(model, prompt_ids, gen_cfg, _stop_ids(gen_cfg, tokenizer))
    if not [s for s in gen_cfg.stop_strings if s]:
        return list(tokens)
    if tokenizer is None:
        raise ValueError("stop_strings need a tokenizer")
    s = TextStream(tokens, tokenizer, gen_cfg.stop_strings)
    s.read()
    return s.token_ids
