"""`zerollm tokenizer train | stats | compare`: text → a tokenizer directory, and how well it segments.

    zerollm tokenizer train TEXTS... --algorithm bpe|wordpiece|unigram|bpe_sp --vocab-size N --out DIR
    zerollm tokenizer stats DIR held_out.txt
    zerollm tokenizer compare held_out.txt --tokenizer A --tokenizer B [--html page.html]

The trainers live in zerollm/tokenizer/ (bpe.py, wordpiece.py, unigram_train.py, bpe_sp.py); the
directory format is tokenizer/base.py's.
"""
from __future__ import annotations

from pathlib import Path

from zerollm.artifacts import prepare_out
from zerollm.data.sources import iter_documents
from zerollm.tokenizer.stats import tokenizer_compare, tokenizer_stats

ALGORITHMS = ("bpe", "wordpiece", "unigram", "bpe_sp")


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
