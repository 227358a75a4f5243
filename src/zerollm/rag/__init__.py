"""Retrieval-augmented generation: load documents, chunk them, index them, retrieve, answer with citations.

    files (.txt .md .html .jsonl) ──loaders──▶ Document ──chunk──▶ Chunk (text + source + heading path)
        ──index.build_index / RAGIndex.add──▶ index dir: manifest.json + chunks.sqlite [+ dense.faiss]
        ──retrieve.Retriever(index).search(q, mode="bm25"|"dense"|"hybrid")──▶ ranked Hits
        ──answer.answer(question, hits, model, tokenizer)──▶ text with [1] [2] citations

BM25 (bm25.py) needs no model at all and splits Japanese into character bigrams, so it works on any
language out of the box; dense retrieval embeds with the BERT-family encoder written in model/bert.py (loads a
sentence-transformers directory from disk) or with mean-pooled hidden states of a zerollm model (embed.py).
"""
from __future__ import annotations

from zerollm.errors import ZeroLLMError


class RAGError(ZeroLLMError):
    """A user-facing problem with documents, an index or a question (the message says what and where)."""


from .bm25 import BM25, tokenize_for_bm25  # noqa: E402
from .chunk import Chunk, chunk_document, chunk_text, split_sentences  # noqa: E402
from .loaders import Document, load_documents  # noqa: E402

__all__ = ["RAGError", "Document", "load_documents", "Chunk", "chunk_document", "chunk_text",
           "split_sentences", "BM25", "tokenize_for_bm25"]
