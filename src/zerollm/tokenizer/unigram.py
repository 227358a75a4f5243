"""Unigram language-model segmentation (Kudo 2018, "Subword Regularization"), as in SentencePiece
(Kudo & Richardson 2018): Viterbi (best), n-best and sampled segmentations of a normalized string.

Every piece x has a score log p(x). The *lattice* of a string has one node per character boundary and one
edge per vocabulary piece that matches there; a segmentation is a path from the first node to the last, and
its score is the sum of its edges' scores.

* `viterbi`: the best path. Ties are broken as SentencePiece does (for each end node, the edge with the
  earliest start wins), so we reproduce the library's output exactly.
* `nbest`: the k best paths (k-best dynamic programming: every node keeps its k best partial paths).
* `sample`: draw a segmentation with probability proportional to p(x)^alpha (forward-filtering,
  backward-sampling) - subword regularization; alpha -> 0 is uniform over segmentations, large alpha
  approaches Viterbi.

A character with no single-character piece gets an `<unk>` edge scored `min_score - 10`
(SentencePiece's kUnkPenalty); the tokenizer turns it into `<0xXX>` byte pieces when byte_fallback is on.
Training lives in `unigram_train.py`.
"""
from __future__ import annotations

import heapq
import math
import random

from zerollm.tokenizer.spm import (
    Normalizer,
    PieceTable,
    SentencePieceTokenizer,
    build_model,
    identity_normalizer_spec,
    num_meta_pieces,
    training_sentences,
)
from zerollm.tokenizer.unigram_train import train_unigram_pieces

UNK_PENALTY = 10.0
_MISSING = object()


class UnigramLattice:
    """Lookup tables for building lattices from a PieceTable."""

    def __init__(self, table: PieceTable):
        self.table = table
        # prefix -> (id, score) if the prefix is a piece, None if only a prefix of longer pieces
        look: dict[str, tuple[int, float] | None] = {p: None for p in table.prefixes}
        for p, i in table.matchable.items():
            if table.types[i] == 4:  # USER_DEFINED: always wins (SentencePiece: length * max_score - 0.1)
                look[p] = (i, len(p) * table.max_score - 0.1)
            else:
                look[p] = (i, table.scores[i])
        self.look = look
        self.max_len = table.max_piece_len
        self.unk_score = table.min_score - UNK_PENALTY

    def edges_from(self, text: str, i: int):
        """(end, id, score) of every edge starting at i; id -1 is the unknown-character edge."""
        look, n = self.look, len(text)
        out, single = [], False
        for L in range(1, min(self.max_len, n - i) + 1):
            hit = look.get(text[i:i + L], _MISSING)
            if hit is _MISSING:
                break
            if hit is not None:
                out.append((i + L, hit[0], hit[1]))
                single = single or L == 1
        if not single:
            out.append((i + 1, -1, self.unk_score))
        return out

    def segment(self, text: str) -> list[tuple[int, int, int]]:
        """Best segmentation as (piece id or -1 for an unknown character, start, end) triples."""
        return self.viterbi(text)

    def viterbi(self, text: str) -> list[tuple[int, int, int]]:
        """Best segmentation as (piece id or -1 for an unknown character, start, end) triples."""
        n = len(text)
        best = [-math.inf] * (n + 1)
        best[0] = 0.0
        back = [(0, 0)] * (n + 1)
        look, max_len, unk, missing = self.look, self.max_len, self.unk_score, _MISSING
        for i in range(n):
            bi = best[i]
            single = False
            for j in range(i + 1, (i + max_len if i + max_len < n else n) + 1):
                hit = look.get(text[i:j], missing)
                if hit is missing:  # no piece starts with text[i:j]
                    break
                if hit is not None:
                    v = bi + hit[1]
                    if v > best[j]:
                        best[j] = v
                        back[j] = (i, hit[0])
                    if j == i + 1:
                        single = True
            if not single and bi + unk > best[i + 1]:
                best[i + 1] = bi + unk
                back[i + 1] = (i, -1)
        out, e = [], n
        while e > 0:
            s, pid = back[e]
            out.append((pid, s, e))
            e = s
        out.reverse()
        return out

    def nbest(self, text: str, k: int) -> list[tuple[list[tuple[int, int, int]], float]]:
        """The k best segmentations with their scores, best first."""
        n = len(text)
        # paths[e]: up to k entries (score, start, start_rank, id)
        paths: list[list[tuple[float, int, int, int]]] = [[] for _ in range(n + 1)]
        paths[0] = [(0.0, -1, -1, 0)]
        incoming: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for i in range(n):
            for end, pid, score in self.edges_from(text, i):
                incoming[end].append((i, pid, score))
        for e in range(1, n + 1):
            cands = [(sc + score, s, r, pid) for s, pid, score in incoming[e]
                     for r, (sc, *_rest) in enumerate(paths[s])]
            paths[e] = heapq.nlargest(k, cands, key=lambda c: c[0])
        results = []
        for r, (score, *_rest) in enumerate(paths[n]):
            seg, e, rank = [], n, r
            while e > 0:
                _, s, srank, pid = paths[e][rank]
                seg.append((pid, s, e))
                e, rank = s, srank
            seg.reverse()
            results.append((seg, score))
        return results

    def sample(self, text: str, alpha: float, rng: random.Random) -> list[tuple[int, int, int]]:
        """A segmentation drawn with probability proportional to exp(alpha * score)."""
        n = len(text)
        logz = [-math.inf] * (n + 1)
        logz[0] = 0.0
        incoming: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for i in range(n):
            for end, pid, score in self.edges_from(text, i):
                incoming[end].append((i, pid, alpha * score))
        for e in range(1, n + 1):
            vals = [logz[s] + sc for s, _, sc in incoming[e]]
            m = max(vals)
            logz[e] = m + math.log(sum(math.exp(v - m) for v in vals))
        out, e = [], n
        while e > 0:
            r, acc = rng.random(), 0.0
            choice = incoming[e][-1]
            for s, pid, sc in incoming[e]:
                acc += math.exp(logz[s] + sc - logz[e])
                if r < acc:
                    choice = (s, pid, sc)
                    break
            out.append((choice[1], choice[0], e))
            e = choice[0]
        out.reverse()
        return out


def train_unigram(texts, vocab_size: int = 8000, *, byte_fallback: bool = True,
                  character_coverage: float = 0.9995, max_piece_len: int = 16, seed_size: int = 1_000_000,
                  shrinking_factor: float = 0.75, num_sub_iterations: int = 2, add_dummy_prefix: bool = True,
                  special_tokens: dict[str, int] | None = None, log=None):
    """Train a Unigram tokenizer on documents (strings). `vocab_size` counts the SentencePiece model's
    pieces (<unk>, <s>, </s>, 256 byte pieces if byte_fallback, learned pieces), as `spm_train` does;
    zerollm's special tokens come after them. Normalization is identity (lossless) with `▁` for spaces."""
    spec = identity_normalizer_spec(add_dummy_prefix)
    sentences = training_sentences(texts, Normalizer(spec))
    pieces = train_unigram_pieces(sentences, vocab_size, num_meta=num_meta_pieces(byte_fallback),
                                  max_piece_len=max_piece_len, character_coverage=character_coverage,
                                  seed_size=seed_size, shrinking_factor=shrinking_factor,
                                  num_sub_iterations=num_sub_iterations, log=log)
    model = build_model(pieces, "unigram", vocab_size, byte_fallback, spec,
                        character_coverage=character_coverage, max_sentencepiece_length=max_piece_len,
                        shrinking_factor=shrinking_factor, num_sub_iterations=num_sub_iterations)
    return SentencePieceTokenizer(model, special_tokens)
