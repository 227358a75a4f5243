"""BPE in SentencePiece mode (Sennrich et al. 2016, as run by SentencePiece, Kudo & Richardson 2018).

Byte-level BPE (bpe.py) cuts text with a regex first; that cannot work for Japanese, which has no spaces.
Here, as in SentencePiece, the raw text is the input: spaces become `▁`, symbols start as *characters*
(not bytes), and a merge may not cross a `▁`-word or a change of Unicode script (Han, Hiragana and
Katakana count as one script). Characters outside the vocabulary fall back to `<0xXX>` byte pieces.

* Training: count adjacent symbol pairs over the unique chunks (script runs inside `▁`-words, weighted
  by their counts), merge the most frequent pair, update only the chunks that contained it (an inverted
  index), repeat. The i-th merged piece gets score -i, as in SentencePiece's `.model` files.
* Encoding (`BPESegmenter`, SentencePiece's bpe_model.cc): start from characters and repeatedly merge the
  adjacent pair whose concatenation is a piece with the highest score (leftmost first on ties), with a heap.
  This also encodes BPE `.model` files written by the `sentencepiece` library (e.g. llama2.c's tok512).
"""
from __future__ import annotations

import collections
import heapq

from zerollm.tokenizer.spm import (
    Normalizer,
    PieceTable,
    SentencePieceTokenizer,
    build_model,
    identity_normalizer_spec,
    num_meta_pieces,
    required_characters,
    split_chunks,
    training_sentences,
)


class BPESegmenter:
    def __init__(self, table: PieceTable):
        self.table = table
        self.look = {p: (i, table.scores[i]) for p, i in table.matchable.items()}
        # UNUSED pieces may be merged through and are then split again (SentencePiece's rev_merge)
        self.unused = {p: i for i, (p, t) in enumerate(zip(table.pieces, table.types)) if t == 5}
        for p, i in self.unused.items():
            self.look.setdefault(p, (i, table.scores[i]))

    def segment(self, text: str) -> list[tuple[int, int, int]]:
        """(piece id or -1 for an unknown symbol, start, end) triples."""
        n = len(text)
        if n == 0:
            return []
        look = self.look
        starts = list(range(n))
        ends = list(range(1, n + 1))  # symbol i covers text[starts[i]:ends[i]]; ends[i] == starts[i] -> dead
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap = []
        for i in range(n - 1):
            hit = look.get(text[i:i + 2])
            if hit is not None:
                heap.append((-hit[1], i, i + 1, 2))
        heapq.heapify(heap)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if ends[left] == starts[left] or ends[right] == starts[right] or \
                    ends[right] - starts[left] != size or nxt[left] != right:
                continue
            ends[left] = ends[right]
            starts[right] = ends[right]  # dead
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            for a, b in ((prev[left], left), (left, nxt[left])):
                if a >= 0 and b >= 0:
                    hit = look.get(text[starts[a]:ends[b]])
                    if hit is not None:
                        heapq.heappush(heap, (-hit[1], a, b, ends[b] - starts[a]))
        out, i = [], 0
        while i != -1:
            self._resegment(text, starts[i], ends[i], out)
            i = nxt[i]
        return out

    def _resegment(self, text, s, e, out):
        piece = text[s:e]
        i = self.table.matchable.get(piece)
        if i is not None:
            out.append((i, s, e))
        elif piece in self.unused and e - s > 1:  # split an unused piece back into its best two parts
            for k in range(1, e - s):
                if text[s:s + k] in self.look and text[s + k:e] in self.look:
                    self._resegment(text, s, s + k, out)
                    self._resegment(text, s + k, e, out)
                    return
            out.append((-1, s, e))
        else:
            out.append((-1, s, e))


def train_bpe_pieces(sentences, vocab_size: int, *, num_meta: int, max_piece_len: int = 16,
                     character_coverage: float = 0.9995, split_by_unicode_script: bool = True,
                     log=None) -> list[tuple[str, float]]:
    """Learn `vocab_size - num_meta` pieces (merged pieces by merge order, then characters) with
    SentencePiece-style scores (-i). `sentences` are already normalized (with `▁`).

    All unique chunks are laid end to end as one doubly linked list of symbols (ints), each position
    weighted by its chunk's count; `where[pair]` holds the positions where a pair starts. A merge visits
    only those positions, so the total work is proportional to the number of merge applications."""

    say = log or (lambda msg: None)
    counter: collections.Counter = collections.Counter()
    for s in sentences:
        counter.update(split_chunks(s, split_by_unicode_script))
    _, required = required_characters(counter, vocab_size, num_meta, character_coverage)
    target = vocab_size - num_meta
    names = list(required)  # symbol id -> string
    sid = {ch: i for i, ch in enumerate(names)}
    sym, weight, nxt, prv = [], [], [], []
    for chunk, c in counter.items():
        base = len(sym)
        for k, ch in enumerate(chunk):
            sym.append(sid.get(ch, -1))  # -1: a rare character, never merged
            weight.append(c)
            prv.append(base + k - 1 if k else -1)
            nxt.append(base + k + 1 if k + 1 < len(chunk) else -1)
    pair_count: collections.Counter = collections.Counter()
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for i, j in enumerate(nxt):
        if j >= 0 and sym[i] >= 0 and sym[j] >= 0:
            pair_count[sym[i], sym[j]] += weight[i]
            where[sym[i], sym[j]].add(i)
    heap = [(-c, names[a], names[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[str] = []
    num_merges = target - len(required)
    while len(merges) < num_merges and heap:
        negc, _, _, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -negc or negc == 0:
            continue  # stale heap entry
        new_name = names[a] + names[b]
        if len(new_name) > max_piece_len:
            pair_count[a, b] = 0
            continue
        new = len(names)
        names.append(new_name)
        merges.append(new_name)
        changed = set()
        for i in sorted(where.pop((a, b), ())):
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:
                continue  # consumed by an overlapping occurrence ("aaa")
            w, left, right = weight[i], prv[i], nxt[j]
            if left >= 0 and sym[left] >= 0:
                pair_count[sym[left], a] -= w
                where[sym[left], a].discard(left)
                changed.add((sym[left], a))
            if right >= 0 and sym[right] >= 0:
                pair_count[b, sym[right]] -= w
                where[b, sym[right]].discard(j)
                changed.add((b, sym[right]))
            sym[i], sym[j] = new, -2  # j is gone
            nxt[i] = right
            if right >= 0:
                prv[right] = i
            if left >= 0 and sym[left] >= 0:
                pair_count[sym[left], new] += w
                where[sym[left], new].add(left)
                changed.add((sym[left], new))
            if right >= 0 and sym[right] >= 0:
                pair_count[new, sym[right]] += w
                where[new, sym[right]].add(i)
                changed.add((new, sym[right]))
        pair_count.pop((a, b), None)
        for p in changed:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], names[p[0]], names[p[1]], p[0], p[1]))
        if len(merges) % 1000 == 0:
            say(f"bpe_sp: {len(merges)} merges")
    if len(merges) < num_merges:  # as spm_train with hard_vocab_limit
        found = len(merges) + len(required) + num_meta
        raise ValueError(f"vocab_size {vocab_size} is too high for this corpus: only {found} pieces found; "
                         f"use vocab_size <= {found}")
    pieces = {}
    for i, m in enumerate(merges):
        pieces.setdefault(m, -float(i))
    k = len(merges)
    for ch in required:
        if ch not in pieces:
            pieces[ch] = -float(k)
            k += 1
    return list(pieces.items())


def train_bpe_sp(texts, vocab_size: int = 8000, *, byte_fallback: bool = True,
                 character_coverage: float = 0.9995, max_piece_len: int = 16, add_dummy_prefix: bool = True,
                 split_by_unicode_script: bool = True, special_tokens: dict[str, int] | None = None, log=None):
    """Train a SentencePiece-mode BPE tokenizer on documents (strings); `vocab_size` counts the model's
    pieces as `spm_train` does (see unigram.train_unigram). `split_by_unicode_script=False` lets merges
    cross script changes inside a `▁`-word (e.g. Japanese `た。`, `」と`): better compression, as
    `tokenizers`' Metaspace BPE does; the flag is stored in the model and the library honours it."""
    spec = identity_normalizer_spec(add_dummy_prefix)
    sentences = training_sentences(texts, Normalizer(spec))
    pieces = train_bpe_pieces(sentences, vocab_size, num_meta=num_meta_pieces(byte_fallback),
                              max_piece_len=max_piece_len, character_coverage=character_coverage,
                              split_by_unicode_script=split_by_unicode_script, log=log)
    model = build_model(pieces, "bpe", vocab_size, byte_fallback, spec,
                        character_coverage=character_coverage, max_sentencepiece_length=max_piece_len,
                        split_by_unicode_script=split_by_unicode_script)
    return SentencePieceTokenizer(model, special_tokens)
