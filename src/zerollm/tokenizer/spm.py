"""The SentencePiece pipeline shared by our Unigram and SentencePiece-mode BPE tokenizers.

SentencePiece (Kudo & Richardson 2018) treats text as a raw character stream: no language-specific
pre-tokenization; spaces become the visible meta symbol `▁` (U+2581) so decoding is lossless; a dummy `▁`
is put in front of the text so a word at the start looks like one in the middle. The steps are

    text -> normalize (charsmap, whitespace rules, `▁`) -> segment (Unigram Viterbi or BPE merges)
         -> ids (unknown characters -> `<0xXX>` byte pieces when byte_fallback is on, else `<unk>`)

A tokenizer directory holds `manifest.json` and `tokenizer.model`, a real SentencePiece ModelProto that the
`sentencepiece` library loads as is (`export_model`), and `import_model` reads one the library wrote.

Speed: segmenting is cached per *chunk*. A chunk is a run of one Unicode script inside a `▁`-word (Han,
Hiragana, Katakana and `ー` count as one script, as in SentencePiece's trainer). When no piece of the
vocabulary crosses a chunk boundary (checked on the vocabulary at load, `chunk_safe`), segmenting the
chunks separately gives exactly the segmentation of the whole text, so this is an optimization, not a
pre-tokenization. Models with a piece that does cross (e.g. `split_by_whitespace=false`) are segmented
whole.
"""
from __future__ import annotations

import functools
import re
import unicodedata

import regex

from zerollm.tokenizer.sentencepiece_model import (BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED,
                                                   CharsMap, SentencePieceModel)

WS = "\u2581"  # ▁
_SPACES = re.compile(" +")
_SCRIPTS = ("Latin Greek Cyrillic Armenian Hebrew Arabic Syriac Thaana Devanagari Bengali Gurmukhi "
            "Gujarati Oriya Tamil Telugu Kannada Malayalam Sinhala Thai Lao Tibetan Myanmar Georgian "
            "Hangul Ethiopic Cherokee Khmer Mongolian Bopomofo Yi").split()
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc"
# One alternative per script run; `▁`s attach to the run that follows; combining marks (Inherited)
# attach to the run before. Digits form their own runs (split_by_number), everything else is Common.
_CHUNK_PATTERN = (
    WS + r"*(?:[" + _CJK + r"][" + _CJK + r"\p{Inherited}]*"
    + r"|[0-9\uff10-\uff19][0-9\uff10-\uff19\p{Inherited}]*"
    + "".join(rf"|\p{{{s}}}[\p{{{s}}}\p{{Inherited}}]*" for s in _SCRIPTS)
    + r"|[^" + _CJK + "".join(rf"\p{{{s}}}" for s in _SCRIPTS) + WS + r"0-9\uff10-\uff19]"
    + r"[^" + _CJK + "".join(rf"\p{{{s}}}" for s in _SCRIPTS) + WS + r"0-9\uff10-\uff19]*"
    + r")|" + WS + "+"
)
_CHUNK_RE = regex.compile(_CHUNK_PATTERN)


_WORD_RE = regex.compile(WS + "*[^" + WS + "]+|" + WS + "+")


def split_chunks(text: str, by_script: bool = True) -> list[str]:
    """Split normalized text (with `▁`) into script runs inside `▁`-words (or only into `▁`-words);
    `"".join(...) == text`."""
    return (_CHUNK_RE if by_script else _WORD_RE).findall(text)


def required_characters(counter, vocab_size: int, num_meta: int, character_coverage: float):
    """SentencePiece's character step, shared by the Unigram and BPE trainers: count characters over the
    unique chunks (`counter`: chunk -> count), keep the most frequent ones covering `character_coverage`
    of all occurrences (always `▁`), and check they fit in `vocab_size - num_meta`.
    Returns (char_count, required characters, most frequent first)."""
    import collections

    if not counter:
        raise ValueError("cannot train a tokenizer on an empty corpus (no non-empty lines)")
    char_count: collections.Counter = collections.Counter()
    for chunk, c in counter.items():
        for ch in chunk:
            char_count[ch] += c
    total = sum(char_count.values())
    required, acc = [], 0
    for ch, c in sorted(char_count.items(), key=lambda kv: (-kv[1], kv[0])):
        if acc / total >= character_coverage and ch != WS:
            break
        required.append(ch)
        acc += c
    if vocab_size - num_meta < len(required):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(required)} required characters "
                         f"+ {num_meta} meta pieces; use vocab_size >= {len(required) + num_meta + 1} "
                         f"or lower character_coverage")
    return char_count, required


class Normalizer:
    """SentencePiece's `Normalizer::Normalize` for a NormalizerSpec: charsmap rules, then whitespace
    handling (remove_extra_whitespaces, add_dummy_prefix, escape_whitespaces)."""

    def __init__(self, spec: dict, charsmap: bytes = b"", user_defined: tuple[str, ...] = (),
                 treat_whitespace_as_suffix: bool = False):
        self.add_dummy_prefix = spec.get("add_dummy_prefix", True)
        self.remove_extra_whitespaces = spec.get("remove_extra_whitespaces", True)
        self.escape_whitespaces = spec.get("escape_whitespaces", True)
        self.suffix = treat_whitespace_as_suffix
        self.charsmap = _load_charsmap(charsmap) if charsmap else None
        # user-defined symbols are never normalized (SentencePiece's prefix matcher)
        self.user_re = (re.compile("|".join(map(re.escape, sorted(user_defined, key=len, reverse=True))))
                        if user_defined else None)

    def _pieces(self, text: str):
        """Yield the normalized replacement of each input prefix (NormalizePrefix)."""
        cm, i, n = self.charsmap, 0, len(text)
        if cm is None and self.user_re is None:
            yield text
            return
        while i < n:
            if self.user_re is not None:
                m = self.user_re.match(text, i)
                if m:
                    yield m.group()
                    i = m.end()
                    continue
            if cm is None:
                yield text[i]
                i += 1
            else:
                rep, k = cm.normalize_prefix(text, i)
                yield rep
                i += k

    def __call__(self, text: str) -> str:
        ws = WS if self.escape_whitespaces else " "
        if self.charsmap is None and self.user_re is None:  # fast path: no character rules
            if self.remove_extra_whitespaces:
                text = _SPACES.sub(" ", text).strip(" ")
            if not text:
                return ""
            body = text.replace(" ", WS) if self.escape_whitespaces else text
            if self.add_dummy_prefix:
                return body + ws if self.suffix else ws + body
            return body
        pieces = list(self._pieces(text))
        k = 0
        if self.remove_extra_whitespaces:  # ignore heading spaces
            while k < len(pieces) and pieces[k] == " ":
                k += 1
        if k == len(pieces):
            return ""
        out: list[str] = [ws] if self.add_dummy_prefix and not self.suffix else []
        prev_space = self.remove_extra_whitespaces
        for sp in pieces[k:]:
            if prev_space:
                sp = sp.lstrip(" ")
            if sp:
                out.append(sp.replace(" ", WS) if self.escape_whitespaces else sp)
                prev_space = sp.endswith(" ")
            if not self.remove_extra_whitespaces:
                prev_space = False
        s = "".join(out)
        if self.remove_extra_whitespaces:
            while s.endswith(ws):
                s = s[:-len(ws)]
        if self.suffix and self.add_dummy_prefix:
            s += ws
        return s


@functools.lru_cache(maxsize=4)
def _load_charsmap(blob: bytes) -> CharsMap:
    return CharsMap(blob)


def nfkc_charsmap_free(text: str) -> str:
    """Our own trainers' optional "nfkc" rule when no precompiled charsmap is available."""
    return unicodedata.normalize("NFKC", text)


class PieceTable:
    """Pieces, scores and types of a SentencePiece model, with the lookups every segmenter needs."""

    def __init__(self, model: SentencePieceModel):
        self.model = model
        self.pieces = [p for p, _, _ in model.pieces]
        self.scores = [s for _, s, _ in model.pieces]
        self.types = [t for _, _, t in model.pieces]
        self.piece_to_id: dict[str, int] = {}
        for i, (p, t) in enumerate(zip(self.pieces, self.types)):
            self.piece_to_id.setdefault(p, i)
        # pieces the segmenter may produce from text (SentencePiece's trie holds exactly these)
        self.matchable = {p: i for i, (p, t) in enumerate(zip(self.pieces, self.types))
                          if t in (NORMAL, USER_DEFINED)}
        self.user_defined = tuple(p for p, t in zip(self.pieces, self.types) if t == USER_DEFINED)
        self.unk_id = next((i for i, t in enumerate(self.types) if t == UNKNOWN), None)
        if self.unk_id is None:
            raise ValueError("SentencePiece model has no <unk> piece")
        self.byte_fallback = bool(model.trainer("byte_fallback"))
        self.byte_ids = [self.piece_to_id.get(f"<0x{b:02X}>", -1) for b in range(256)]
        if self.byte_fallback and -1 in self.byte_ids:
            raise ValueError("byte_fallback model without all 256 <0xXX> pieces")
        normal = [s for s, t in zip(self.scores, self.types) if t == NORMAL]
        self.min_score = min(normal, default=0.0)
        self.max_score = max(normal, default=0.0)
        self.max_piece_len = max((len(p) for p in self.matchable), default=1)
        self.prefixes = {p[:k] for p in self.matchable for k in range(1, len(p) + 1)}
        self.by_script = bool(model.trainer("split_by_unicode_script"))
        self.chunk_safe = all(len(split_chunks(p, self.by_script)) <= 1
                              for p, t in zip(self.pieces, self.types) if t == NORMAL)

    def unk_to_ids(self, surface: str) -> list[int]:
        """An unknown character: its UTF-8 bytes as byte pieces, or `<unk>`."""
        if self.byte_fallback:
            # lone surrogates (not valid Unicode) keep their bytes; they decode to U+FFFD
            return [self.byte_ids[b] for b in surface.encode("utf-8", "surrogatepass")]
        return [self.unk_id]

    def token_bytes(self, i: int) -> bytes:
        t = self.types[i]
        if t == BYTE:
            return bytes([int(self.pieces[i][3:5], 16)])
        if t in (CONTROL, UNUSED):
            return b""
        if t == UNKNOWN:
            return self.model.trainer("unk_surface").encode("utf-8")
        return self.pieces[i].replace(WS, " ").encode("utf-8")


def decode_pieces(table: PieceTable, ids: list[int], add_dummy_prefix: bool, suffix: bool = False) -> bytes:
    """SentencePiece's decode: concatenate surfaces (`▁` -> space) and drop the dummy-prefix space."""
    out = b"".join(table.token_bytes(i) for i in ids)
    if add_dummy_prefix:
        if suffix:
            if out.endswith(b" "):
                out = out[:-1]
        elif out.startswith(b" "):
            out = out[1:]
    return out


# ---------------------------------------------------------------- the tokenizer
from zerollm.tokenizer.base import Tokenizer, default_special_tokens  # noqa: E402

MODEL_FILE = "tokenizer.model"


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (Unigram or BPE) behind zerollm's Tokenizer interface.

    ids 0..len(pieces)-1 are the model's pieces (so ids equal the `sentencepiece` library's), followed by
    zerollm's special tokens. Text around special tokens is normalized segment by segment, each with its
    own dummy prefix, and `decode` drops that dummy space again, so decode(encode(t)) == t for
    identity-normalized models (charsmap models such as nmt_nfkc normalize, as the library does).
    `token_bytes(id)` is the piece's own surface (`▁` -> space); `decode_bytes` additionally drops the
    dummy-prefix space at the start and after special tokens."""

    def __init__(self, model: SentencePieceModel, special_tokens: dict[str, int] | None = None):
        from zerollm.tokenizer.bpe_sp import BPESegmenter
        from zerollm.tokenizer.unigram import UnigramLattice

        self.model = model
        self.table = PieceTable(model)
        self.algorithm = {"unigram": "unigram", "bpe": "bpe_sp"}.get(model.model_type)
        if self.algorithm is None:
            raise ValueError(f"SentencePiece model type {model.model_type!r} is not supported "
                             f"(unigram and bpe are)")
        self.normalizer = Normalizer(
            {k: model.normalizer(k) for k in ("add_dummy_prefix", "remove_extra_whitespaces",
                                              "escape_whitespaces")},
            model.normalizer("precompiled_charsmap"), self.table.user_defined,
            bool(model.trainer("treat_whitespace_as_suffix")))
        self._seg = (UnigramLattice(self.table) if self.algorithm == "unigram" else BPESegmenter(self.table))
        n = len(self.table.pieces)
        if special_tokens is None:
            special_tokens = {s: n + i for i, s in enumerate(default_special_tokens())}
        bad = {s: i for s, i in special_tokens.items() if i < n}
        if bad:
            raise ValueError(f"special token ids must come after the {n} pieces: {bad}")
        self._special_tokens = dict(special_tokens)
        self._id_to_special = {i: s for s, i in special_tokens.items()}
        self._cache: dict[str, list[int]] = {}
        self._special_re = None

    # -- interface properties
    @property
    def vocab_size(self) -> int:
        return max([len(self.table.pieces) - 1, *self._special_tokens.values()]) + 1

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    # -- encoding
    def _segment(self, s: str) -> list[int]:
        return self._to_ids(s, self._seg.segment(s))

    def _to_ids(self, s: str, seg) -> list[int]:
        ids: list[int] = []
        for pid, start, end in seg:
            ids.extend(self.table.unk_to_ids(s[start:end]) if pid < 0 else (pid,))
        return ids

    def _unigram(self, what: str):
        if self.algorithm != "unigram":
            raise ValueError(f"{what} needs a Unigram model (this one is {self.algorithm})")
        return self._seg

    def nbest_encode(self, text: str, nbest_size: int) -> list[list[int]]:
        """The `nbest_size` most likely segmentations, best first (Unigram only; like the library's
        `nbest_encode_as_ids`)."""
        norm = self.normalizer(text)
        return [self._merge_unknowns(self._to_ids(norm, seg))
                for seg, _ in self._unigram("nbest").nbest(norm, nbest_size)]

    def sample_encode(self, text: str, alpha: float = 0.1, seed: int | None = None, rng=None) -> list[int]:
        """Subword regularization (Kudo 2018): a segmentation sampled with probability ~ p(x)^alpha."""
        import random

        norm = self.normalizer(text)
        rng = rng or random.Random(seed)
        return self._merge_unknowns(self._to_ids(norm, self._unigram("sampling").sample(norm, alpha, rng)))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no special-token handling (the SentencePiece library's `encode`)."""
        norm = self.normalizer(text)
        if not self.table.chunk_safe:
            out = self._segment(norm)
        else:
            cache, out = self._cache, []
            if len(cache) > 500_000:
                cache.clear()
            for chunk in split_chunks(norm, self.table.by_script):
                ids = cache.get(chunk)
                if ids is None:
                    ids = cache[chunk] = self._segment(chunk)
                out.extend(ids)
        return self._merge_unknowns(out)

    def _merge_unknowns(self, out: list[int]) -> list[int]:
        """Without byte fallback, a run of unknown characters is one `<unk>` (as in the library)."""
        if not self.table.byte_fallback and self.table.unk_id in out:
            unk = self.table.unk_id
            out = [i for k, i in enumerate(out) if not (i == unk and k and out[k - 1] == unk)]
        return out

    def _split_specials(self, text: str, allowed_special):
        if allowed_special == "none" or not allowed_special:
            return [(text, None)]
        allowed = set(self._special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self._special_tokens)
        if unknown:
            raise ValueError(f"unknown special token(s) {sorted(unknown)}; this tokenizer has "
                             f"{sorted(self._special_tokens)}")
        pat = re.compile("|".join(map(re.escape, sorted(allowed, key=len, reverse=True))))
        parts, pos = [], 0
        for m in pat.finditer(text):
            parts.append((text[pos:m.start()], None))
            parts.append(("", self._special_tokens[m.group()]))
            pos = m.end()
        parts.append((text[pos:], None))
        return parts

    def encode(self, text: str, allowed_special="none") -> list[int]:
        out: list[int] = []
        for seg, sid in self._split_specials(text, allowed_special):
            if sid is not None:
                out.append(sid)
            elif seg:
                out.extend(self.encode_ordinary(seg))
        return out

    def encode_batch(self, texts, allowed_special="none", num_threads: int = 1) -> list[list[int]]:
        return [self.encode(t, allowed_special) for t in texts]

    # -- decoding
    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self._id_to_special:
            return self._id_to_special[token_id].encode("utf-8")
        if not 0 <= token_id < len(self.table.pieces):
            raise ValueError(f"token id {token_id} out of range [0, {self.vocab_size})")
        return self.table.token_bytes(token_id)

    def decode_bytes(self, ids) -> bytes:
        out, run = [], []
        dummy = self.normalizer.add_dummy_prefix and not self.normalizer.suffix
        for i in list(ids) + [None]:
            if i is None or int(i) in self._id_to_special:
                if run:
                    out.append(decode_pieces(self.table, run, self.normalizer.add_dummy_prefix,
                                             self.normalizer.suffix) if dummy or self.normalizer.suffix
                               else b"".join(map(self.table.token_bytes, run)))
                    run = []
                if i is not None:
                    out.append(self.token_bytes(int(i)))
            else:
                run.append(int(i))
                self.token_bytes(int(i))  # range check
        return b"".join(out)

    def id_to_piece(self, token_id: int) -> str:
        return self._id_to_special.get(token_id) or self.table.pieces[token_id]

    # -- persistence
    def definition_bytes(self) -> bytes:
        import json

        specials = json.dumps(self._special_tokens, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return self.model.to_bytes() + b"\n" + specials

    @property
    def hash(self) -> str:
        import hashlib

        return hashlib.sha256(self.definition_bytes()).hexdigest()

    def manifest_fields(self) -> dict:
        m = self.model
        return {"algorithm": self.algorithm, "model_file": MODEL_FILE,
                "normalization": {"name": m.normalizer("name") or "identity",
                                  "precompiled_charsmap": bool(m.normalizer("precompiled_charsmap")),
                                  "add_dummy_prefix": m.normalizer("add_dummy_prefix"),
                                  "remove_extra_whitespaces": m.normalizer("remove_extra_whitespaces"),
                                  "escape_whitespaces": m.normalizer("escape_whitespaces")},
                "byte_fallback": self.table.byte_fallback, "pieces": len(self.table.pieces),
                "special_tokens": self.special_tokens, "vocab_size": self.vocab_size, "hash": self.hash}

    def save(self, directory):
        from pathlib import Path

        from zerollm.artifacts import atomic_dir, write_manifest

        with atomic_dir(Path(directory), "tokenizer") as tmp:
            (tmp / MODEL_FILE).write_bytes(self.model.to_bytes())
            write_manifest(tmp, "tokenizer", **self.manifest_fields())
        return Path(directory)

    @classmethod
    def load(cls, directory, manifest: dict | None = None) -> "SentencePieceTokenizer":
        from pathlib import Path

        from zerollm.artifacts import read_manifest
        from zerollm.tokenizer.sentencepiece_model import read_model

        manifest = manifest or read_manifest(directory, kind="tokenizer")
        model = read_model(Path(directory) / manifest.get("model_file", MODEL_FILE))
        tok = cls(model, {s: int(i) for s, i in manifest["special_tokens"].items()})
        if manifest.get("hash") and manifest["hash"] != tok.hash:
            raise ValueError(f"{directory}: tokenizer hash mismatch (files changed after saving?)")
        return tok

    def export_model(self, path) -> None:
        """Write the `.model` file the `sentencepiece` library loads (`spm.SentencePieceProcessor`)."""
        from zerollm.tokenizer.sentencepiece_model import write_model

        write_model(self.model, path)


def import_sentencepiece(path, special_tokens: dict[str, int] | None = None) -> SentencePieceTokenizer:
    """Load a `.model` file written by the `sentencepiece` library (Unigram or BPE)."""
    from zerollm.tokenizer.sentencepiece_model import read_model

    return SentencePieceTokenizer(read_model(path), special_tokens)


# ---------------------------------------------------------------- training helpers
def training_sentences(texts, normalizer: "Normalizer") -> list[str]:
    """Normalized training sentences: every non-empty line of every document (as SentencePiece reads
    its input one sentence per line)."""
    out = []
    for doc in texts:
        for line in doc.split("\n"):
            if line.strip():
                s = normalizer(line)
                if s:
                    out.append(s)
    return out


def identity_normalizer_spec(add_dummy_prefix: bool = True, remove_extra_whitespaces: bool = False) -> dict:
    """Our trainers' normalization: no character rules (lossless), `▁` for spaces."""
    return {"name": "identity", "add_dummy_prefix": add_dummy_prefix,
            "remove_extra_whitespaces": remove_extra_whitespaces, "escape_whitespaces": True}


def build_model(pieces: list[tuple[str, float]], model_type: str, vocab_size: int, byte_fallback: bool,
                normalizer_spec: dict, **trainer_fields) -> SentencePieceModel:
    """A ModelProto in SentencePiece's default layout: <unk>=0, <s>=1, </s>=2, then <0x00>..<0xFF> when
    byte_fallback, then the learned pieces."""
    from zerollm.tokenizer.sentencepiece_model import MODEL_TYPE_IDS

    meta = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    if byte_fallback:
        meta += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    seen = {p for p, _, _ in meta}
    body = [(p, float(s), NORMAL) for p, s in pieces if p not in seen]
    trainer = {"model_type": MODEL_TYPE_IDS[model_type], "vocab_size": len(meta) + len(body),
               "byte_fallback": byte_fallback, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1,
               **trainer_fields}
    return SentencePieceModel(pieces=meta + body, trainer_spec=trainer, normalizer_spec=dict(normalizer_spec))


def num_meta_pieces(byte_fallback: bool) -> int:
    return 3 + (256 if byte_fallback else 0)
