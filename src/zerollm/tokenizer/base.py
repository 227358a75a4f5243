"""The `Tokenizer` interface every zerollm tokenizer implements, special tokens, and `load_tokenizer`.

A tokenizer maps text <-> a list of integer ids. zerollm tokenizers are byte-level: every id stands for a
byte string (`token_bytes(id)`), and decoding is concatenating those bytes, so any text round-trips
exactly. Special tokens (`<|bos|>`, `<|eos|>`, chat markers, ...) get ids right after the learned
vocabulary; they are only produced from text when the caller allows it (`allowed_special`), so a
document that happens to contain the string "<|eos|>" cannot inject a real end-of-sequence.

Tokenizers are saved as a directory whose `manifest.json` has `"kind": "tokenizer"` and an `"algorithm"`
field; `load_tokenizer(dir)` looks the algorithm up in `ALGORITHMS` and calls that class's `load(dir)`.
New algorithms register with `register_algorithm("wordpiece", "zerollm.tokenizer.wordpiece:WordPiece")`
(a class, or a "module:attribute" string imported on first use).
"""
from __future__ import annotations

import codecs
import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import AbstractSet, Iterable, Literal, Sequence, Union

from zerollm.artifacts import read_manifest

# The named special tokens, in id order; `default_special_tokens()` pads them with reserved slots so a
# later fine-tuning stage can give a reserved token a meaning without resizing the embedding matrix.
NAMED_SPECIAL_TOKENS = (
    "<|bos|>", "<|eos|>", "<|pad|>",
    "<|im_start|>", "<|im_end|>",
    "<|tool_call|>", "<|/tool_call|>", "<|tool_result|>", "<|/tool_result|>",
    "<|think|>", "<|/think|>",
)
NUM_DEFAULT_SPECIAL_TOKENS = 16

# Which special token plays which role, unless a tokenizer says otherwise (GPT-2 uses <|endoftext|>).
DEFAULT_ROLES = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>"}

AllowedSpecial = Union[Literal["none", "all"], AbstractSet[str]]


def default_special_tokens(total: int = NUM_DEFAULT_SPECIAL_TOKENS) -> list[str]:
    """The named special tokens followed by `<|reserved_0|>`, `<|reserved_1|>`, ... up to `total`."""
    if total < len(NAMED_SPECIAL_TOKENS):
        raise ValueError(f"need room for {len(NAMED_SPECIAL_TOKENS)} named special tokens, got total={total}")
    reserved = [f"<|reserved_{i}|>" for i in range(total - len(NAMED_SPECIAL_TOKENS))]
    return [*NAMED_SPECIAL_TOKENS, *reserved]


def default_num_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Tokenizer(ABC):
    """Interface shared by all tokenizers (see docs/architecture.md).

    Subclasses implement the abstract members; `decode`, the role ids, `encode_batch` (a plain loop) and
    `__len__` have working defaults here."""

    algorithm: str = ""

    # ---- vocabulary ---------------------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, including special tokens (ids are 0 .. vocab_size-1)."""

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id."""

    @property
    def roles(self) -> dict[str, str]:
        """Role ("bos", "eos", "pad") -> special token string, for the roles this tokenizer has."""
        return {role: tok for role, tok in DEFAULT_ROLES.items() if tok in self.special_tokens}

    def _role_id(self, role: str) -> int | None:
        tok = self.roles.get(role)
        return None if tok is None else self.special_tokens[tok]

    @property
    def bos_id(self) -> int | None:
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._role_id("eos")

    @property
    def pad_id(self) -> int | None:
        return self._role_id("pad")

    def __len__(self) -> int:
        return self.vocab_size

    # ---- text <-> ids -------------------------------------------------------------------------------
    # Special ids the tokenizer puts around one whole text a model reads (transformers' tokenizer(text) with
    # add_special_tokens=True): Llama-2's BOS in front, an EOS behind when add_eos_token. Empty for zerollm's
    # own tokenizers (documents are separated by EOS in the shards, chat templates write their own markers);
    # interop/hf_tokenizer sets them for imported ones, `AFFIXES_FILE` keeps them in the tokenizer directory.
    affixes: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())

    def encode_special(self, text: str, allowed_special: AllowedSpecial = "none", suffix: bool = True) -> list[int]:
        """`encode` plus the tokenizer's own BOS/EOS (`affixes`): the ids a raw text is given to the model as.
        `suffix=False` for a prompt the model continues (its BOS, not an EOS). Never for text rendered by a
        chat template (the template already writes bos_token)."""
        prefix, after = self.affixes
        return [*prefix, *self.encode(text, allowed_special), *(after if suffix else ())]

    @abstractmethod
    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """Text -> ids. `allowed_special`: "none" encodes special-token strings as ordinary text, "all"
        turns every special-token string into its id, a set turns only those."""

    def encode_batch(self, texts: Sequence[str], allowed_special: AllowedSpecial = "none",
                     num_threads: int | None = None) -> list[list[int]]:
        return [self.encode(t, allowed_special=allowed_special) for t in texts]

    @abstractmethod
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the exact bytes they stand for (special tokens as their UTF-8 text)."""

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids -> text. Incomplete or invalid UTF-8 (e.g. a cut multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one id."""

    # ---- persistence --------------------------------------------------------------------------------
    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer directory atomically; return its path."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path, manifest: dict | None = None) -> "Tokenizer":
        """Read a directory written by `save` (manifest already parsed if given)."""

    @property
    @abstractmethod
    def hash(self) -> str:
        """sha256 hex digest of the saved definition; equal hashes mean identical tokenization."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, hash={self.hash[:12]})"


class StreamDecoder:
    """Turn a stream of ids into text pieces without ever splitting a UTF-8 character.

    A multi-byte character (Japanese, emoji) is often split across several byte-level tokens; decoding
    each token alone would print U+FFFD garbage. `feed(id)` returns only the complete characters
    available so far and holds back a trailing incomplete sequence until the next token completes it.
    Bytes that can never become valid UTF-8 are emitted as U+FFFD right away. Call `flush()` at the end.

        dec = StreamDecoder(tok)
        for i in ids: print(dec.feed(i), end="")
        print(dec.flush())
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._decoder.decode(self.tokenizer.token_bytes(token_id))

    def feed_many(self, ids: Iterable[int]) -> str:
        return self._decoder.decode(self.tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        """Return what is still held back (an incomplete character becomes U+FFFD) and reset."""
        out = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return out

    @property
    def pending(self) -> bytes:
        """Bytes held back, waiting for the rest of a character."""
        return self._decoder.getstate()[0]


# ---- algorithm registry -----------------------------------------------------------------------------
# algorithm name -> Tokenizer subclass, or "module:attribute" imported lazily (avoids import cycles and
# lets an algorithm register without its module being imported up front).
ALGORITHMS: dict[str, Union[type[Tokenizer], str]] = {
    "bpe": "zerollm.tokenizer.bpe:BPETokenizer",
    "wordpiece": "zerollm.tokenizer.wordpiece:WordPieceTokenizer",
    "unigram": "zerollm.tokenizer.spm:SentencePieceTokenizer",
    "bpe_sp": "zerollm.tokenizer.spm:SentencePieceTokenizer",
    "hf": "zerollm.interop.hf_tokenizer:HFTokenizer",  # any tokenizer.json, through the `tokenizers` library
}


def register_algorithm(name: str, cls: Union[type[Tokenizer], str]) -> None:
    ALGORITHMS[name] = cls


def _resolve_algorithm(name: str) -> type[Tokenizer]:
    entry = ALGORITHMS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        ALGORITHMS[name] = entry
    return entry


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load any saved tokenizer directory (or a checkpoint dir containing `tokenizer/`)."""
    directory = Path(directory)
    if (directory / "tokenizer" / "manifest.json").is_file():
        top = read_manifest(directory) if (directory / "manifest.json").is_file() else {}
        if top.get("kind") != "tokenizer":
            directory = directory / "tokenizer"
    manifest = read_manifest(directory, kind="tokenizer")
    algorithm = manifest.get("algorithm")
    if algorithm not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS))
        raise ValueError(f"{directory / 'manifest.json'}: unknown tokenizer algorithm {algorithm!r} "
                         f"(known: {known})")
    tok = _resolve_algorithm(algorithm).load(directory, manifest=manifest)
    if (directory / AFFIXES_FILE).is_file():
        import json

        try:
            d = json.loads((directory / AFFIXES_FILE).read_text(encoding="utf-8"))
            tok.affixes = (tuple(int(i) for i in d["prefix"]), tuple(int(i) for i in d["suffix"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{directory / AFFIXES_FILE}: not {{'prefix': [ids], 'suffix': [ids]}} ({e})") from None
    return tok


AFFIXES_FILE = "special_affixes.json"


def save_affixes(tokenizer: Tokenizer, directory: str | Path) -> None:
    """Write the tokenizer's BOS/EOS affixes beside its files (nothing when it has none)."""
    if any(tokenizer.affixes):
        from zerollm.artifacts import atomic_write_json

        prefix, suffix = tokenizer.affixes
        atomic_write_json(Path(directory) / AFFIXES_FILE, {"prefix": list(prefix), "suffix": list(suffix)})
