"""Tokenizers: byte-level BPE (trained from scratch or imported from GPT-2), behind one interface.

    from zerollm.tokenizer import train_bpe, load_tokenizer
    tok = train_bpe(["some text", ...], vocab_size=4096)
    tok.save("out/tokenizer"); tok = load_tokenizer("out/tokenizer")
    ids = tok.encode("hello"); text = tok.decode(ids)
"""
from zerollm.tokenizer.base import (ALGORITHMS, DEFAULT_ROLES, NAMED_SPECIAL_TOKENS, StreamDecoder, Tokenizer,
                                    default_special_tokens, load_tokenizer, register_algorithm)
from zerollm.tokenizer.bpe import BPETokenizer, count_chunks, learn_merges, read_ranks, train_bpe
from zerollm.tokenizer.gpt2 import load_gpt2_bpe
from zerollm.tokenizer.pretokenize import DEFAULT_PATTERN, GPT2_PATTERN, GPT4_PATTERN, PATTERNS, pretokenize

__all__ = [
    "Tokenizer", "StreamDecoder", "load_tokenizer", "register_algorithm", "ALGORITHMS", "default_special_tokens",
    "NAMED_SPECIAL_TOKENS", "DEFAULT_ROLES", "BPETokenizer", "train_bpe", "count_chunks", "learn_merges",
    "read_ranks", "load_gpt2_bpe", "pretokenize", "GPT2_PATTERN", "GPT4_PATTERN", "DEFAULT_PATTERN", "PATTERNS",
]
