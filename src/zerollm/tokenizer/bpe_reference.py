"""Reference byte-level BPE encoder in plain Python: the definition the fast (tiktoken) path must match.

Encoding a text, exactly as tiktoken does it:

 1. If special tokens are allowed, cut the text at each allowed special-token string; those become their
    ids and the pieces in between are encoded as ordinary text (so a chunk never spans a special).
 2. Split the ordinary text with the pre-tokenization regex (pretokenize.py).
 3. For each chunk's UTF-8 bytes: if the whole chunk is a token, emit it (tiktoken's shortcut). Otherwise
    start from single bytes and repeatedly merge the adjacent pair whose *concatenation* has the lowest
    rank (the leftmost one if the same pair occurs twice), until no adjacent concatenation is a token.

Ranks are learned in merge order, so "lowest rank of the concatenation" replays the training merges in
the order they were learned. This is O(n^2) per chunk and only meant for tests and for reading.
"""
from __future__ import annotations

from typing import AbstractSet, Mapping

import regex

from zerollm.tokenizer.pretokenize import DEFAULT_PATTERN, compile_pattern


def bpe_chunk(chunk: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Encode the bytes of one pre-token chunk."""
    if chunk in ranks:
        return [ranks[chunk]]
    parts = [bytes([b]) for b in chunk]
    while len(parts) > 1:
        best = None  # (rank, position) of the best adjacent pair so far
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def _utf8(text: str) -> bytes:
    # Lone surrogates cannot be UTF-8 encoded; tiktoken replaces them with U+FFFD, and so do we.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def encode_ordinary(text: str, ranks: Mapping[bytes, int], pattern: str = DEFAULT_PATTERN) -> list[int]:
    """Encode text with no special-token handling (special strings are just text)."""
    ids: list[int] = []
    memo: dict[str, list[int]] = {}  # text repeats chunks (" the") a lot; encode each distinct one once
    for chunk in compile_pattern(pattern).findall(_utf8(text).decode("utf-8")):
        if chunk not in memo:
            memo[chunk] = bpe_chunk(chunk.encode("utf-8"), ranks)
        ids.extend(memo[chunk])
    return ids


def encode(text: str, ranks: Mapping[bytes, int], pattern: str = DEFAULT_PATTERN,
           special_tokens: Mapping[str, int] | None = None,
           allowed_special: AbstractSet[str] | str = "none") -> list[int]:
    """Encode text; occurrences of the allowed special-token strings become their ids."""
    special_tokens = special_tokens or {}
    if allowed_special == "all":
        allowed = set(special_tokens)
    elif allowed_special == "none":
        allowed = set()
    else:
        allowed = set(allowed_special)
    if not allowed:
        return encode_ordinary(text, ranks, pattern)
    # Longest first, so that a special that is a prefix of another cannot shadow it.
    special_re = regex.compile("|".join(regex.escape(s) for s in sorted(allowed, key=lambda s: (-len(s), s))))
    ids: list[int] = []
    start = 0
    for m in special_re.finditer(text):
        ids.extend(encode_ordinary(text[start:m.start()], ranks, pattern))
        ids.append(special_tokens[m.group()])
        start = m.end()
    ids.extend(encode_ordinary(text[start:], ranks, pattern))
    return ids
