"""`GenerationConfig` (what to generate) and the stop rules every decoder shares: which token ids end a
sequence (`stop_ids`) and where a stop string cuts the text (`first_stop`, `partial_stop_len`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


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


def stop_ids(gen_cfg: GenerationConfig, tokenizer) -> frozenset[int]:
    """gen_cfg.stop_token_ids, or the tokenizer's eos id when they are None."""
    if gen_cfg.stop_token_ids is not None:
        return frozenset(int(i) for i in gen_cfg.stop_token_ids)
    eos = getattr(tokenizer, "eos_id", None)
    return frozenset() if eos is None else frozenset([eos])


def first_stop(text: str, stop_strings: Sequence[str]) -> int | None:
    """Index of the earliest stop-string occurrence in text, or None."""
    hits = [i for i in (text.find(s) for s in stop_strings if s) if i >= 0]
    return min(hits) if hits else None


def partial_stop_len(text: str, stop_strings: Sequence[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of some stop string (must be held back:
    the next tokens may complete the stop string)."""
    best = 0
    for s in stop_strings:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
