"""WordPiece (Schuster & Nakajima 2012, "Japanese and Korean Voice Search"; Wu et al. 2016, Google's NMT
system; the tokenizer of BERT, Devlin et al. 2019).

Text is BERT-normalized and split into words (normalize.py: CJK ideographs become one-character words,
punctuation is split off). A word is then written with pieces from the vocabulary: the first piece as is,
the following ones with a `##` prefix ("playing" -> "play", "##ing").

**Training** starts from every character (word-initial `c` and continuation `##c`) and repeatedly merges
the adjacent pair with the highest *likelihood* score

    score(a, b) = count(ab) / (count(a) * count(b))

- the merge that most increases the likelihood of the training data under a unigram model of the pieces
(unlike BPE's raw count, it prefers pairs whose parts rarely occur apart). Counts are over unique words
weighted by frequency; an inverted index updates only the words that contain the merged pair, and a lazy
heap (entries re-pushed whenever a pair's count or one of its symbols' counts changes) finds the best pair.

**Encoding** is greedy longest-match-first per word (BERT's algorithm): take the longest vocabulary piece
that starts the rest of the word (`##`-prefixed after the first), repeat; if nothing matches, the whole
word becomes `[UNK]`, as does any word longer than `max_input_chars_per_word` (100) characters.
Identical to Hugging Face `BertTokenizerFast` with the same vocab file (tests check this).

**Decoding** joins pieces with spaces and glues `##` pieces to the previous one. WordPiece is lossy:
case, accents (if stripped) and exact whitespace are not recoverable.
"""
from __future__ import annotations

import collections
import hashlib
import heapq
import json
import re
from pathlib import Path

from zerollm.tokenizer.normalize import bert_normalize, bert_pre_tokenize

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_FILE = "vocab.txt"

from zerollm.artifacts import atomic_dir, read_manifest, write_manifest
from zerollm.tokenizer.base import Tokenizer, default_special_tokens


def train_wordpiece_vocab(words: collections.Counter, vocab_size: int, *, prefix: str = "##",
                          reserved: list[str] = BERT_SPECIALS, min_frequency: int = 2, log=None) -> list[str]:
    """Learn a WordPiece vocabulary (reserved tokens, then the alphabet, then merges in order).
    Pairs seen fewer than `min_frequency` times are never merged (the likelihood score alone would
    prefer pairs of rare symbols that occur once, together)."""
    say = log or (lambda m: None)
    words = {w: c for w, c in words.items() if w}
    if not words:
        raise ValueError("cannot train WordPiece on an empty corpus (no words)")
    seqs = [[w[0]] + [prefix + ch for ch in w[1:]] for w in words]
    counts = list(words.values())
    sym_count: collections.Counter = collections.Counter()
    pair_count: collections.Counter = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    pairs_of: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for wi, (s, c) in enumerate(zip(seqs, counts)):
        for x in s:
            sym_count[x] += c
        for p in zip(s, s[1:]):
            pair_count[p] += c
            where[p].add(wi)
            pairs_of[p[0]].add(p)
            pairs_of[p[1]].add(p)
    alphabet = sorted(sym_count)
    vocab = list(reserved) + [a for a in alphabet if a not in reserved]
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(reserved)} reserved tokens + "
                         f"{len(alphabet)} characters of the alphabet; use vocab_size >= {len(vocab)}")
    in_vocab = set(vocab)

    def score(p):
        return pair_count[p] / (sym_count[p[0]] * sym_count[p[1]])

    heap = [(-score(p), p) for p in pair_count]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) < max(1, min_frequency) or -neg != score(pair):
            continue  # stale: a fresher entry for this pair is in the heap (or it is gone)
        a, b = pair
        new = a + b[len(prefix):] if b.startswith(prefix) else a + b
        touched: set[tuple[str, str]] = set()
        for wi in where.pop(pair, ()):
            s, c = seqs[wi], counts[wi]
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            if len(out) == len(s):
                continue
            for x in s:
                sym_count[x] -= c
            for p in zip(s, s[1:]):
                pair_count[p] -= c
                touched.add(p)
            for x in out:
                sym_count[x] += c
            for p in zip(out, out[1:]):
                pair_count[p] += c
                where[p].add(wi)
                pairs_of[p[0]].add(p)
                pairs_of[p[1]].add(p)
                touched.add(p)
            seqs[wi] = out
        pair_count.pop(pair, None)
        if new not in in_vocab:
            vocab.append(new)
            in_vocab.add(new)
        # scores changed for touched pairs and every pair containing a symbol whose count changed
        for sym in (a, b, new):
            touched |= pairs_of.get(sym, set())
        for p in touched:
            if pair_count.get(p, 0) > 0:
                heapq.heappush(heap, (-score(p), p))
        if len(vocab) % 1000 == 0:
            say(f"wordpiece: {len(vocab)} tokens")
    return vocab


class WordPieceTokenizer(Tokenizer):
    """BERT WordPiece behind zerollm's Tokenizer interface. ids: the vocab file's lines, then zerollm's
    special tokens (`<|bos|>`, `<|eos|>`, ...)."""

    algorithm = "wordpiece"

    def __init__(self, vocab: list[str], special_tokens: dict[str, int] | None = None, *,
                 lowercase: bool = True, strip_accents: bool | None = False, handle_chinese_chars: bool = True,
                 unk_token: str = "[UNK]", prefix: str = "##", max_input_chars_per_word: int = 100):
        self.vocab = list(vocab)
        self.token_to_id = {t: i for i, t in reversed(list(enumerate(self.vocab)))}
        if unk_token not in self.token_to_id:
            raise ValueError(f"WordPiece vocab has no unknown token {unk_token!r}")
        self.unk_token, self.unk_id = unk_token, self.token_to_id[unk_token]
        self.lowercase, self.strip_accents = lowercase, strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        self.prefix, self.max_chars = prefix, max_input_chars_per_word
        n = len(self.vocab)
        if special_tokens is None:
            special_tokens = {s: n + i for i, s in enumerate(default_special_tokens())}
        if any(i < n for i in special_tokens.values()):
            raise ValueError(f"special token ids must come after the {n} vocabulary entries")
        self._special_tokens = dict(special_tokens)
        self._id_to_special = {i: s for s, i in special_tokens.items()}
        self._cache: dict[str, list[int]] = {}
        self.max_token_len = max(len(t) for t in self.vocab)

    vocab_size = property(lambda self: max([len(self.vocab) - 1, *self._special_tokens.values()]) + 1)
    special_tokens = property(lambda self: dict(self._special_tokens))

    def normalize(self, text: str) -> str:
        return bert_normalize(text, lowercase=self.lowercase, strip_accents=self.strip_accents,
                              handle_chinese_chars=self.handle_chinese_chars)

    def encode_word(self, word: str) -> list[int]:
        """Greedy longest-match-first; the whole word is [UNK] if any part cannot be matched."""
        if len(word) > self.max_chars:
            return [self.unk_id]
        out, start, n, look = [], 0, len(word), self.token_to_id
        while start < n:
            end = min(n, start + self.max_token_len)
            pre = self.prefix if start else ""
            while end > start:
                i = look.get(pre + word[start:end])
                if i is not None:
                    out.append(i)
                    break
                end -= 1
            else:
                return [self.unk_id]
            start = end
        return out

    def encode_ordinary(self, text: str) -> list[int]:
        cache, out = self._cache, []
        if len(cache) > 500_000:
            cache.clear()
        for w in bert_pre_tokenize(self.normalize(text)):
            ids = cache.get(w)
            if ids is None:
                ids = cache[w] = self.encode_word(w)
            out.extend(ids)
        return out

    def encode(self, text: str, allowed_special="none") -> list[int]:
        if allowed_special == "none" or not allowed_special:
            return self.encode_ordinary(text)
        allowed = set(self._special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self._special_tokens)
        if unknown:
            raise ValueError(f"unknown special token(s) {sorted(unknown)}")
        out, pos = [], 0
        for m in re.finditer("|".join(map(re.escape, sorted(allowed, key=len, reverse=True))), text):
            out += self.encode_ordinary(text[pos:m.start()]) + [self._special_tokens[m.group()]]
            pos = m.end()
        return out + self.encode_ordinary(text[pos:])

    def encode_batch(self, texts, allowed_special="none", num_threads: int = 1) -> list[list[int]]:
        return [self.encode(t, allowed_special) for t in texts]

    def token_bytes(self, token_id: int) -> bytes:
        """A continuation piece's text without `##`; any other token with a leading space."""
        if token_id in self._id_to_special:
            return self._id_to_special[token_id].encode("utf-8")
        if not 0 <= token_id < len(self.vocab):
            raise ValueError(f"token id {token_id} out of range [0, {self.vocab_size})")
        t = self.vocab[token_id]
        return t[len(self.prefix):].encode() if t.startswith(self.prefix) and len(t) > len(self.prefix) \
            else b" " + t.encode("utf-8")

    def decode_bytes(self, ids) -> bytes:
        """Pieces joined BERT-style; special tokens are glued to their neighbours (no added space)."""
        out, after_special = [], True
        for i in ids:
            b = self.token_bytes(int(i))
            if after_special and b.startswith(b" "):
                b = b[1:]
            after_special = int(i) in self._id_to_special
            out.append(b)
        return b"".join(out)

    def config(self) -> dict:
        return {"lowercase": self.lowercase, "strip_accents": self.strip_accents,
                "handle_chinese_chars": self.handle_chinese_chars, "unk_token": self.unk_token,
                "prefix": self.prefix, "max_input_chars_per_word": self.max_chars}

    @property
    def hash(self) -> str:
        blob = json.dumps({"vocab": self.vocab, "config": self.config(), "special_tokens": self._special_tokens},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def save(self, directory) -> Path:
        with atomic_dir(Path(directory), "tokenizer") as tmp:
            (tmp / VOCAB_FILE).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")
            write_manifest(tmp, "tokenizer", algorithm="wordpiece", vocab_file=VOCAB_FILE,
                           normalization={"name": "bert", **{k: v for k, v in self.config().items()
                                                              if k in ("lowercase", "strip_accents",
                                                                       "handle_chinese_chars")}},
                           wordpiece=self.config(), special_tokens=self.special_tokens,
                           vocab_size=self.vocab_size, hash=self.hash)
        return Path(directory)

    @classmethod
    def load(cls, directory, manifest: dict | None = None) -> "WordPieceTokenizer":
        manifest = manifest or read_manifest(directory, kind="tokenizer")
        vocab = read_vocab(Path(directory) / manifest.get("vocab_file", VOCAB_FILE))
        tok = cls(vocab, {s: int(i) for s, i in manifest["special_tokens"].items()}, **manifest["wordpiece"])
        if manifest.get("hash") and manifest["hash"] != tok.hash:
            raise ValueError(f"{directory}: tokenizer hash mismatch (files changed after saving?)")
        return tok

    def save_vocab(self, path) -> None:
        """BERT's `vocab.txt` (one token per line, line number = id), for `BertTokenizerFast(vocab_file=)`."""
        Path(path).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")


def read_vocab(path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def train_wordpiece(texts, vocab_size: int = 8000, *, lowercase: bool = True, strip_accents: bool | None = False,
                    handle_chinese_chars: bool = True, min_frequency: int = 2,
                    special_tokens: dict[str, int] | None = None, log=None) -> WordPieceTokenizer:
    """Train WordPiece on documents (strings). `vocab_size` counts the vocab file's entries ([PAD] [UNK]
    [CLS] [SEP] [MASK], the alphabet, the merges); zerollm's special tokens come after them.
    `strip_accents=False` by default because NFD + dropping marks also removes Japanese dakuten
    (で -> て); pass None for BERT's behaviour (strip when lowercasing)."""
    words: collections.Counter = collections.Counter()
    for doc in texts:
        words.update(bert_pre_tokenize(bert_normalize(doc, lowercase=lowercase, strip_accents=strip_accents,
                                                      handle_chinese_chars=handle_chinese_chars)))
    vocab = train_wordpiece_vocab(words, vocab_size, min_frequency=min_frequency, log=log)
    return WordPieceTokenizer(vocab, special_tokens, lowercase=lowercase, strip_accents=strip_accents,
                              handle_chinese_chars=handle_chinese_chars)
