"""BM25 ranking with Japanese-aware term splitting; no model, no training, any language.

Score of document d for query q (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25
and Beyond", eq. 3.15, with Lucene's non-negative IDF):

    score(q, d) = Σ_{t ∈ q} IDF(t) · tf(t,d)·(k1+1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl))
    IDF(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))

Term splitting (`tokenize_for_bm25`): text is NFKC-normalized and lower-cased, then cut into runs of one
writing system. A run of Latin letters/digits (any non-Japanese letter or number) is a word; it never
swallows the Japanese after it ("Transformerとは" -> transformer | とは..., "2017年" -> 2017 | 年).
Japanese has no spaces and no model is assumed, so a run of kanji/kana becomes overlapping character
bigrams (a one-character run stays a unigram), with kanji unigrams added (many Japanese content words are a
single kanji: 雨, 海, 県). Bigrams cross kanji/kana boundaries inside a Japanese run (登場し, ト語): measured
on JSQuAD (bench/bench_rag.py, docs/benchmarks.md) this beats cutting at every script change, and with the
kanji unigrams it is at or above a plain character-bigram BM25 over the same text.

The scorer precomputes each posting's full BM25 weight at build time ("eager" scoring, as bm25s does), so a
query is a handful of numpy gathers and adds: postings are stored CSR-style (term -> slice of doc ids and
weights).
"""
from __future__ import annotations

import math
import unicodedata
from typing import Iterable, Sequence

import numpy as np
import regex

_JA = r"\p{Han}\p{Katakana}\p{Hiragana}ー々〆"
# a Japanese run, or a run of other letters/digits that contains no Japanese character (V1 set difference)
_RUN = regex.compile(rf"(?P<ja>[{_JA}]+)|[[\p{{L}}\p{{N}}_]--[{_JA}]]+", regex.V1)
_HAN = regex.compile(r"\p{Han}")


def tokenize_for_bm25(text: str) -> list[str]:
    """Terms of a text: words for Latin scripts, character bigrams (+ kanji unigrams) for Japanese/CJK."""
    text = unicodedata.normalize("NFKC", text).lower()
    terms: list[str] = []
    for m in _RUN.finditer(text):
        run = m.group()
        if m.group("ja") is None:  # a word of a space-separated script (or digits)
            terms.append(run)
        elif len(run) == 1:
            terms.append(run)
        else:  # overlapping bigrams + each kanji on its own
            terms += [run[i:i + 2] for i in range(len(run) - 1)]
            terms += [c for c in run if _HAN.match(c)]
    return terms


class BM25:
    """An in-memory BM25 index over a list of documents (each given as text or as a list of terms)."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, tokenizer=tokenize_for_bm25):
        self.k1, self.b, self.tokenizer = k1, b, tokenizer
        self.vocab: dict[str, int] = {}
        self.n_docs = 0
        self.indptr = np.zeros(1, dtype=np.int64)
        self.doc_ids = np.zeros(0, dtype=np.int32)
        self.weights = np.zeros(0, dtype=np.float32)

    def index(self, docs: Iterable[str | Sequence[str]]) -> "BM25":
        """Build the index (replacing any previous one); documents are numbered 0..N-1 in order."""
        term_ids, doc_of, counts, lengths = [], [], [], []
        for d, doc in enumerate(docs):
            terms = self.tokenizer(doc) if isinstance(doc, str) else list(doc)
            lengths.append(len(terms))
            if not terms:
                continue
            ids = np.fromiter((self.vocab.setdefault(t, len(self.vocab)) for t in terms), dtype=np.int64,
                              count=len(terms))
            uniq, cnt = np.unique(ids, return_counts=True)
            term_ids.append(uniq)
            counts.append(cnt)
            doc_of.append(np.full(len(uniq), d, dtype=np.int32))
        self.n_docs = len(lengths)
        if not term_ids:
            self.indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
            return self
        t = np.concatenate(term_ids)
        d = np.concatenate(doc_of)
        tf = np.concatenate(counts).astype(np.float32)
        order = np.argsort(t, kind="stable")
        t, d, tf = t[order], d[order], tf[order]
        dl = np.asarray(lengths, dtype=np.float32)
        avgdl = max(float(dl.mean()), 1e-9)
        df = np.bincount(t, minlength=len(self.vocab)).astype(np.float64)
        idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))  # Lucene's non-negative IDF
        norm = self.k1 * (1 - self.b + self.b * dl[d] / avgdl)
        self.weights = (idf[t] * tf * (self.k1 + 1) / (tf + norm)).astype(np.float32)
        self.doc_ids = d
        self.indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(t, minlength=len(self.vocab)), out=self.indptr[1:])
        return self

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query, shape (N,)."""
        terms = self.tokenizer(query) if isinstance(query, str) else list(query)
        out = np.zeros(self.n_docs, dtype=np.float32)
        for term in dict.fromkeys(terms):  # each distinct query term once
            tid = self.vocab.get(term)
            if tid is None:
                continue
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            out[self.doc_ids[lo:hi]] += self.weights[lo:hi]  # doc ids are unique within a posting list
        return out

    def search(self, query: str | Sequence[str], k: int = 10) -> list[tuple[int, float]]:
        """The k best (doc index, score) pairs with a positive score, best first."""
        s = self.scores(query)
        k = min(k, self.n_docs)
        if k <= 0:
            return []
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((top, -s[top]))]  # by score, ties by doc index (deterministic)
        return [(int(i), float(s[i])) for i in top if s[i] > 0]


def _check() -> None:  # a tiny self-check of the IDF formula against the closed form
    bm = BM25().index(["a b", "a c"])
    assert math.isclose(float(bm.scores(["b"])[0]), math.log1p(1.5 / 1.5) * 2.5 / (1 + 1.5), rel_tol=1e-5)
