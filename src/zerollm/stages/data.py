"""`zerollm data prepare`: documents → token shards + manifest + validation split (zerollm/data/prepare.py).

    zerollm data prepare TEXTS... --tokenizer DIR --out SHARDS [--val-fraction 0.01] [--workers 2]
"""
from __future__ import annotations

from zerollm.data.prepare import data_prepare, prepare_summary

__all__ = ["data_prepare", "prepare_summary"]
