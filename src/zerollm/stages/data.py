"""`zerollm data prepare`: documents → token shards + manifest + validation split (zerollm/data/prepare.py).

    zerollm data prepare TEXTS... --tokenizer DIR --out SHARDS [--val-fraction 0.01] [--workers 2] [--overwrite]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import prepare_out
from zerollm.data import prepare
from zerollm.data.prepare import prepare_summary


@dataclass
class DataPrepareConfig:
    inputs: list = field(default_factory=list,
                         metadata={"positional": "+", "help": "text/.jsonl/.parquet files, directories or globs"})
    tokenizer: str = field(default="", metadata={"required": True, "help": "tokenizer directory"})
    out: str = field(default="", metadata={"required": True})
    text_field: str = "text"
    val_fraction: float = 0.01
    workers: int = 2
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})


def data_prepare(inputs, tokenizer, out: str | Path, *, overwrite: bool = False, **kwargs) -> dict:
    """Tokenize `inputs` into a shards directory `out` (kwargs: data.prepare.data_prepare's). `out` may
    already hold shards (replaced); anything else there is an error unless `overwrite` (moved aside)."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    prepare_out(out, "shards", overwrite=overwrite, inputs=inputs + [tokenizer])
    return prepare.data_prepare(inputs, tokenizer, out, **kwargs)


__all__ = ["data_prepare", "prepare_summary"]
