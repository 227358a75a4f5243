"""Retrieval over a `RAGIndex`: BM25, dense (embedding cosine) or hybrid reciprocal-rank fusion.

Hybrid fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal Rank Fusion outperforms Condorcet and
individual Rank Learning Methods"): every ranker contributes 1 / (k + rank) for each document it ranks,
rank starting at 1, k = 60; documents are sorted by the sum. RRF needs no score calibration between BM25
scores and cosine similarities, which live on unrelated scales.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import RAGError
from .chunk import Chunk

MODES = ("auto", "bm25", "dense", "hybrid")


@dataclass
class Hit:
    id: int  # chunk id in the index
    chunk: Chunk
    score: float  # BM25 score, cosine similarity, or RRF score, depending on the mode


def rrf(rankings: list[list[int]], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several ranked id lists -> [(id, fused score)] best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


class Retriever:
    def __init__(self, index, embedder=None):
        self.index = index
        self.embedder = embedder if embedder is not None else index.embedder

    def search(self, query: str, k: int = 5, mode: str = "auto", candidates: int = 50) -> list[Hit]:
        """The k best chunks for `query`. mode "auto" is hybrid when the index has vectors, else BM25."""
        if mode not in MODES:
            raise RAGError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip():
            raise RAGError("empty question")
        if len(self.index) == 0:
            return []
        has_dense = bool(self.index.vectors) and self.embedder is not None
        if mode == "auto":
            mode = "hybrid" if has_dense else "bm25"
        if mode in ("dense", "hybrid") and not has_dense:
            raise RAGError(f"mode {mode!r} needs an index built with an embedder")
        if mode == "bm25":
            ranked = self._bm25(query, k)
        elif mode == "dense":
            ranked = self._dense(query, k)
        else:
            lists = [[i for i, _ in self._bm25(query, candidates)], [i for i, _ in self._dense(query, candidates)]]
            ranked = rrf(lists)[:k]
        return [Hit(i, self.index.chunks[i], s) for i, s in ranked]

    def _bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        bm25, ids = self.index.bm25()
        return [(ids[d], s) for d, s in bm25.search(query, k)]

    def _dense(self, query: str, k: int) -> list[tuple[int, float]]:
        vec = self.embedder.encode([query], is_query=True)[0]
        return self.index.dense_search(vec, k)


def search(index, query: str, k: int = 5, mode: str = "auto") -> list[Hit]:
    return Retriever(index).search(query, k, mode)
