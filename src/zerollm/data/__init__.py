"""Data: readers, tokenized shards, the training data loader and the built-in default corpus.

    sources.iter_documents ──▶ prepare.data_prepare ──▶ shards dir ──▶ loader.TokenLoader
    corpus.write_default_corpus (CPython's own docs) ──┘
"""
from zerollm.data.corpus import default_corpus_documents, default_corpus_text, write_default_corpus
from zerollm.data.loader import TokenLoader
from zerollm.data.prepare import data_prepare, prepare_summary
from zerollm.data.shards import ShardWriter, dtype_for_vocab, open_shard
from zerollm.data.sources import DataError, DataWarning, Document, SourceStats, iter_documents

__all__ = [
    "DataError", "DataWarning", "Document", "ShardWriter", "SourceStats", "TokenLoader",
    "data_prepare", "default_corpus_documents", "default_corpus_text", "dtype_for_vocab",
    "iter_documents", "open_shard", "prepare_summary", "write_default_corpus",
]

