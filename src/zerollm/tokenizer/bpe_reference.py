"""Reference byte-level BPE in plain Python: the trainer and the encoder, the definitions the fast paths
(bpe.py: `learn_merges` / `train_bpe`, and tiktoken) must match. Short and slow, meant for tests and for reading.

Training (`train_bpe_reference`), the textbook merge loop of Sennrich, Haddow & Birch 2016 ("Neural Machine
Translation of Rare Words with Subword Units", ACL), on bytes:

 1. Split every text with the pre-tokenization regex (pretokenize.py) and count the distinct chunks; a
    merge never crosses a chunk boundary. Each chunk starts as its UTF-8 bytes, token ids 0..255.
 2. Count every adjacent pair of tokens over all chunks, each weighted by how often its chunk occurs.
 3. Take the most frequent pair (a, b). Ties: the smallest pair of ids (a, b) wins (compare a, then b),
    so lower bytes and earlier-learned tokens go first. bpe.py breaks ties the same way.
 4. Add the token c = bytes(a) + bytes(b) and replace (a, b) by c in every chunk, left to right, without
    overlap ("aaa" with (a, a) becomes "ca"). If those bytes are already a token (reached by another
    split), that id is reused and no token is added.
 5. Repeat from 2 until the vocabulary is full or no pair occurs `min_frequency` times.

bpe.py learns the same merges without recounting everything for every merge; the tests prove the two equal.

Encoding a text, exactly as tiktoken does it:

 1. If special tokens are allowed, cut the text at each allowed special-token string; those become their
    ids and the pieces in between are encoded as ordinary text (so a chunk never spans a special).
 2. Split the ordinary text with the pre-tokenization regex (pretokenize.py).
 3. For each chunk's UTF-8 bytes: if the whole chunk is a token, emit it (tiktoken's shortcut). Otherwise
    start from single bytes and repeatedly merge the adjacent pair whose *concatenation* has the lowest
    rank (the leftmost one if the same pair occurs twice), until no adjacent concatenation is a token.

Ranks are learned in merge order, so "lowest rank of the concatenation" replays the training merges in
the order they were learned. Training recounts every pair for every merge and encoding is O(n^2) per chunk.
"""
from __future__ import annotations

import collections
from typing import AbstractSet, Iterable, Mapping

import regex

from zerollm.tokenizer.pretokenize import DEFAULT_PATTERN, compile_pattern, resolve_pattern


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


# ---- training ---------------------------------------------------------------------------------------
def train_bpe_reference(texts: Iterable[str], vocab_size: int, pattern: str = DEFAULT_PATTERN,
                        min_frequency: int = 2) -> dict[bytes, int]:
    """Train byte-level BPE; returns the mergeable ranks {token bytes: rank}, what `encode` above takes.

    vocab_size counts the mergeable tokens (256 bytes + learned ones); special tokens are not BPE's
    business (train_bpe adds them after these). pattern: a regex or "gpt2"/"gpt4"."""
    split = compile_pattern(resolve_pattern(pattern)).findall
    chunk_counts: collections.Counter = collections.Counter()
    for text in texts:
        for chunk in split(text):
            chunk_counts[_utf8(chunk)] += 1
    vocab, _ = learn_merges_reference(chunk_counts, vocab_size - 256, min_frequency)
    return {token: rank for rank, token in enumerate(vocab)}


def learn_merges_reference(chunk_counts: Mapping[bytes, int], num_tokens: int, min_frequency: int = 2
                           ) -> tuple[list[bytes], list[tuple[int, int, int]]]:
    """Learn up to `num_tokens` tokens from {chunk bytes: frequency}: steps 2-5 of the module docstring.

    Same arguments and result as bpe.learn_merges: vocab[i] = bytes of token i, and merges = [(a, b, c), ...]
    in the order learned (pair (a, b) became token c)."""
    vocab = [bytes([i]) for i in range(256)]
    token_id = {token: i for i, token in enumerate(vocab)}
    chunks = [(list(chunk), f) for chunk, f in chunk_counts.items()]  # list(bytes) = its byte ids
    merges = []
    while len(vocab) < 256 + num_tokens:
        counts: collections.Counter = collections.Counter()  # 2. every adjacent pair, weighted
        for ids, f in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] += f
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # 3. most frequent; ties: smallest (a, b)
        if counts[pair] < max(min_frequency, 1):
            break
        a, b = pair
        merged = vocab[a] + vocab[b]  # 4. the new token (or the existing one with these bytes)
        c = token_id.get(merged)
        if c is None:
            c = token_id[merged] = len(vocab)
            vocab.append(merged)
        merges.append((a, b, c))
        for ids, _ in chunks:
            ids[:] = _merge(ids, a, b, c)
    return vocab, merges


def _merge(ids: list[int], a: int, b: int, c: int) -> list[int]:
    """Replace each (a, b) in ids by c, left to right, without overlap."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(c)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
