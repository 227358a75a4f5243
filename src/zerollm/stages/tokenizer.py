"""`zerollm tokenizer train | stats | compare`: text → a tokenizer directory, and how well it segments.

    zerollm tokenizer train TEXTS... --algorithm bpe|wordpiece|unigram|bpe_sp --vocab-size N --out DIR
    zerollm tokenizer stats DIR held_out.txt
    zerollm tokenizer compare held_out.txt --tokenizer A --tokenizer B [--html page.html]

The trainers live in zerollm/tokenizer/ (bpe.py, wordpiece.py, unigram_train.py, bpe_sp.py); the
directory format is tokenizer/base.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import prepare_out
from zerollm.data.sources import iter_documents
from zerollm.tokenizer.stats import tokenizer_compare, tokenizer_stats

ALGORITHMS = ("bpe", "wordpiece", "unigram", "bpe_sp")


@dataclass
class TokenizerTrainConfig:
    inputs: list = field(default_factory=list,
                         metadata={"positional": "+", "help": "text/.jsonl/.parquet files, directories or globs"})
    out: str = field(default="", metadata={"required": True})
    vocab_size: int = 4096
    algorithm: str = field(default="bpe", metadata={"choices": ALGORITHMS, "help": "bpe: byte-level BPE (GPT-2/4); "
                           "wordpiece: BERT; unigram / bpe_sp: SentencePiece-style"})
    pattern: str | None = field(default=None,
                                metadata={"help": "pre-tokenization regex, or 'gpt2' / 'gpt4' (bpe only)"})
    text_field: str = "text"
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})


@dataclass
class TokenizerStatsConfig:
    tokenizer: str = field(default="", metadata={"positional": True, "help": "tokenizer directory"})
    files: list = field(default_factory=list, metadata={"positional": "+", "help": "held-out text files"})


@dataclass
class TokenizerCompareConfig:
    files: list = field(default_factory=list, metadata={"positional": "+", "help": "held-out text files"})
    tokenizer: list = field(default_factory=list, metadata={"required": True, "help": "tokenizer directory (repeat)"})
    html: str | None = field(default=None, metadata={"help": "also write an HTML page with the segmentations"})


def tokenizer_train(inputs: list[str], out: str | Path, vocab_size: int = 4096, pattern: str | None = None,
                    text_field: str = "text", show_progress: bool = True, algorithm: str = "bpe",
                    overwrite: bool = False):
    """Train a tokenizer on text files/JSONL/parquet and save it to `out`.
    algorithm: "bpe" (byte-level, regex pre-split), "wordpiece" (BERT), "unigram" or "bpe_sp"
    (SentencePiece-style on raw text with ▁: no pre-split, so Japanese works). `out` may already hold a
    tokenizer (it is replaced); anything else there is an error unless `overwrite` (moved aside)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown tokenizer algorithm {algorithm!r}; expected {' | '.join(ALGORITHMS)}")
    if pattern and algorithm != "bpe":
        raise ValueError(f"--pattern applies to byte-level BPE only, not {algorithm}")
    prepare_out(out, "tokenizer", overwrite=overwrite, inputs=inputs)
    texts = (doc.text for doc in iter_documents(list(inputs), text_field=text_field))
    if algorithm == "bpe":
        from zerollm.tokenizer.bpe import train_bpe

        kwargs = {"pattern": pattern} if pattern else {}
        tok = train_bpe(texts, vocab_size=vocab_size, show_progress=show_progress, **kwargs)
    else:
        if algorithm == "wordpiece":
            from zerollm.tokenizer.wordpiece import train_wordpiece as trainer
        elif algorithm == "unigram":
            from zerollm.tokenizer.unigram import train_unigram as trainer
        else:
            from zerollm.tokenizer.bpe_sp import train_bpe_sp as trainer
        tok = trainer(list(texts), vocab_size=vocab_size)
    tok.save(out)
    return tok


__all__ = ["tokenizer_train", "tokenizer_stats", "tokenizer_compare", "ALGORITHMS"]
