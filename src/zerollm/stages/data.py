"""`zerollm data prepare`: documents → token shards + manifest + validation split (zerollm/data/prepare.py).

    zerollm data prepare TEXTS... --tokenizer DIR --out SHARDS [--val-fraction 0.01] [--workers 2] [--overwrite]
"""
from __future__ import annotations

from pathlib import Path

from zerollm.artifacts import prepare_out
from zerollm.data import prepare
from zerollm.data.prepare import prepare_summary


def data_prepare(inputs, tokenizer, out: str | Path, *, overwrite: bool = False, **kwargs) -> dict:
    """Tokenize `inputs` into a shards directory `out` (kwargs: data.prepare.data_prepare's). `out` may
    already hold shards (replaced); anything else there is an error unless `overwrite` (moved aside)."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    prepare_out(out, "shards", overwrite=overwrite, inputs=inputs + [tokenizer])
    return prepare.data_prepare(inputs, tokenizer, out, **kwargs)


__all__ = ["data_prepare", "prepare_summary"]
