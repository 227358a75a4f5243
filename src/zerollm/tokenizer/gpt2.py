"""Import GPT-2's released BPE (`encoder.json` + `vocab.bpe`) as a zerollm `BPETokenizer`.

GPT-2's files do not store bytes directly. To keep its merges file printable, every byte is mapped to a
visible Unicode character by `bytes_to_unicode()` (printable Latin-1 bytes map to themselves, the other
68 bytes — space, control characters, ... — to U+0100 onwards; a space becomes "Ġ"). So a token string
in the files is decoded back to bytes character by character with the inverse map.

Ranks: the 256 single bytes get ranks 0..255 in `bytes_to_unicode()` order, and the i-th line of
`vocab.bpe` (after the `#version` header) is the token with rank 256 + i. That is exactly GPT-2's own
id assignment, which we verify against every entry of `encoder.json`; `<|endoftext|>` (50256) becomes the
only special token and plays both the bos and eos roles. Encoding uses GPT2_PATTERN.
"""
from __future__ import annotations

import json
from pathlib import Path

from zerollm.tokenizer.bpe import BPETokenizer
from zerollm.tokenizer.pretokenize import GPT2_PATTERN

GPT2_EOT = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (openai/gpt-2, src/encoder.py), in rank order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def load_gpt2_bpe(encoder_json: str | Path, vocab_bpe: str | Path) -> BPETokenizer:
    """Build GPT-2's tokenizer from its two released files (no network)."""
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    byte_map = bytes_to_unicode()
    char_to_byte = {ch: b for b, ch in byte_map.items()}

    def to_bytes(token: str, where: str) -> bytes:
        try:
            return bytes(char_to_byte[ch] for ch in token)
        except KeyError as e:
            raise ValueError(f"{where}: character {e.args[0]!r} in {token!r} is not in GPT-2's byte map") from None

    ranks: dict[bytes, int] = {bytes([b]): rank for rank, b in enumerate(byte_map)}
    with open(vocab_bpe, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for lineno, line in enumerate(lines, 1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{vocab_bpe}:{lineno}: expected 'left right', got {line[:80]!r}")
        token = to_bytes(parts[0], f"{vocab_bpe}:{lineno}") + to_bytes(parts[1], f"{vocab_bpe}:{lineno}")
        if token in ranks:
            raise ValueError(f"{vocab_bpe}:{lineno}: merge produces {token!r}, which already has rank {ranks[token]}")
        ranks[token] = len(ranks)

    try:
        encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{encoder_json}: invalid JSON ({e})") from None
    eot = encoder.pop(GPT2_EOT, None)
    if eot != len(ranks):
        raise ValueError(f"{encoder_json}: {GPT2_EOT} has id {eot}, expected {len(ranks)} (right after the merges)")
    if len(encoder) != len(ranks):
        raise ValueError(f"{encoder_json} has {len(encoder)} tokens but {vocab_bpe} defines {len(ranks)}")
    for token, idx in encoder.items():
        rank = ranks.get(to_bytes(token, str(encoder_json)))
        if rank != idx:
            raise ValueError(f"{encoder_json}: token {token!r} has id {idx} but its rank from {vocab_bpe} is {rank}")
    return BPETokenizer(ranks, pattern=GPT2_PATTERN, special_tokens={GPT2_EOT: eot},
                        roles={"bos": GPT2_EOT, "eos": GPT2_EOT}, name="gpt2")
