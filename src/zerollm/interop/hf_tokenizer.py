"""Hugging Face tokenizer files in and out, and chat templates rendered exactly as transformers does.

Import (`load_hf_tokenizer(dir)`):
- `tokenizer.json` holding a byte-level BPE (GPT-2, Llama-3 and tiktoken-derived vocabularies) becomes our
  own `BPETokenizer`: token strings are GPT-2's printable byte map (`bytes_to_unicode`), so each maps back to
  bytes; ids become tiktoken ranks. That is exact when the merges list produces tokens in id order (merge i
  makes a token with a larger id than merge i-1) and every multi-byte token is some merge's result: then
  "merge the pair listed first" (HF) and "merge the pair whose result has the lowest rank" (tiktoken) pick the
  same pair at every step. The pre-tokenizer regex is GPT-2's (`ByteLevel(use_regex=true)`) or the one in a
  `Split` before `ByteLevel(use_regex=false)`. Anything else (normalizers, byte fallback, Metaspace, WordPiece,
  added tokens that strip whitespace) is wrapped as `HFTokenizer`: the `tokenizers` library behind our
  `Tokenizer` interface.
- a SentencePiece `tokenizer.model` / `spiece.model` alone goes to zerollm's SentencePiece tokenizer;
  `vocab.json` + `merges.txt` alone is read as GPT-2's format.
- `tokenizer_config.json` gives the roles (bos/eos/pad token strings) and the chat template; a
  `chat_template.jinja` file wins over the inline template (as in transformers 5).
- BOS/EOS around a text (`Tokenizer.affixes`, used by `encode_special`; `special_affixes`): what
  transformers' `tokenizer(text)` adds, which depends on the `tokenizer_class` (measured on transformers
  5.25): the Llama family builds its post-processor from `add_bos_token` / `add_eos_token` in
  tokenizer_config.json (absent: nothing, also for a bare `tokenizer.model`); GPTNeoXTokenizer rebuilds
  itself from vocab + merges and adds nothing, whatever the flags or tokenizer.json say; any other class
  (PreTrainedTokenizerFast, none) runs tokenizer.json's post-processor: the `single` template of a
  `TemplateProcessing` (alone or in a `Sequence`; BERT/RoBERTa processors: cls … sep).

Export (`write_hf_tokenizer(tok, dir, ...)`): our BPE as `tokenizer.json` (a `Split` with our regex, then
`ByteLevel`; vocab in the byte map; merges derived from the ranks: every split of a token into two tokens,
ordered by the merged token's rank, with `ignore_merges` (a whole pre-token that is in the vocabulary is one
token), which is tiktoken's algorithm expressed as HF BPE), `tokenizer_config.json`
(`PreTrainedTokenizerFast`, roles, the template inline) and `chat_template.jinja` (the same template).

Chat templates (`render_chat_template`): jinja2's `ImmutableSandboxedEnvironment` with trim_blocks,
lstrip_blocks and loopcontrols, `tojson` without HTML escaping, `raise_exception` and `strftime_now`, the
special-token strings as variables — transformers' `apply_chat_template` (utils/chat_template_utils.py).
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from zerollm.artifacts import atomic_dir, atomic_write_json, atomic_write_text, read_manifest, write_manifest
from zerollm.interop.weights import InteropError
from zerollm.tokenizer.base import Tokenizer
from zerollm.tokenizer.bpe import BPETokenizer
from zerollm.tokenizer.gpt2 import bytes_to_unicode
from zerollm.tokenizer.pretokenize import GPT2_PATTERN

CHAT_TEMPLATE_FILE = "chat_template.jinja"
HF_CONFIG_FILE = "hf_tokenizer_config.json"  # tokenizer_config.json kept beside a converted tokenizer
BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_TO_LATIN1 = str.maketrans({c: chr(b) for c, b in CHAR_TO_BYTE.items()})



class NotByteLevelBPE(Exception):
    """tokenizer.json cannot be expressed as our BPETokenizer (the reason is the message)."""


def _token_str(value: Any) -> str | None:
    """tokenizer_config values are a string or an AddedToken dict {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InteropError(f"{path}: cannot read JSON ({e})") from None


def roles_from_config(config: dict, specials: Iterable[str]) -> dict[str, str]:
    specials = set(specials)
    roles = {}
    for role in ("bos", "eos", "pad"):
        tok = _token_str(config.get(f"{role}_token"))
        if tok in specials:
            roles[role] = tok
    if not roles and "<|endoftext|>" in specials:  # GPT-2 style files without a tokenizer_config.json
        roles = {"bos": "<|endoftext|>", "eos": "<|endoftext|>"}
    return roles


# ----------------------------------------------------------------------------------------------------------
# import


def _pattern_of(pre: dict | None) -> str:
    if pre is None:
        raise NotByteLevelBPE("no pre-tokenizer")
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            raise NotByteLevelBPE("ByteLevel pre-tokenizer with add_prefix_space or without its regex")
        return GPT2_PATTERN
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel":
        split, bl = steps
        regex = (split.get("pattern") or {}).get("Regex")
        if regex is None or split.get("behavior") != "Isolated" or split.get("invert"):
            raise NotByteLevelBPE("Split pre-tokenizer is not an isolated regex split")
        if bl.get("add_prefix_space") or bl.get("use_regex", True):
            raise NotByteLevelBPE("ByteLevel step adds a prefix space or a second regex")
        return regex
    raise NotByteLevelBPE(f"pre-tokenizer {pre.get('type')!r} is not byte-level BPE's")


def bpe_from_tokenizer_json(data: dict, config: dict | None = None, name: str = "hf-bpe"):
    """Our `BPETokenizer` equivalent to a byte-level BPE tokenizer.json, or NotByteLevelBPE."""
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise NotByteLevelBPE(f"model type {model.get('type')!r}")
    if model.get("byte_fallback") or model.get("dropout") or model.get("continuing_subword_prefix") or \
            model.get("end_of_word_suffix"):
        raise NotByteLevelBPE("BPE options (byte_fallback/dropout/subword affixes)")
    if data.get("normalizer") is not None:
        raise NotByteLevelBPE(f"normalizer {data['normalizer'].get('type')!r}")
    pattern = _pattern_of(data.get("pre_tokenizer"))
    added = data.get("added_tokens") or []
    if any(a.get("lstrip") or a.get("rstrip") or a.get("single_word") for a in added):
        raise NotByteLevelBPE("added tokens that strip whitespace")
    added_ids = {int(a["id"]): a["content"] for a in added}
    ranks: dict[bytes, int] = {}
    allowed = set(CHAR_TO_BYTE)
    for token, i in model.get("vocab", {}).items():
        if i in added_ids:
            continue
        if not allowed.issuperset(token):
            raise NotByteLevelBPE(f"vocab token {token!r} is not in the byte map")
        ranks[token.translate(_TO_LATIN1).encode("latin-1")] = int(i)
    n = len(ranks)
    if sorted(ranks.values()) != list(range(n)):
        raise NotByteLevelBPE("vocab ids are not 0..n-1")
    if sorted(added_ids) != list(range(n, n + len(added_ids))):
        raise NotByteLevelBPE("added tokens do not follow the vocabulary")
    last, made = -1, set()
    for m in model.get("merges", []):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        tok = (left + right).translate(_TO_LATIN1).encode("latin-1", "replace")
        rank = ranks.get(tok)
        if rank is None or rank < last:  # equal: another split of the same token (tiktoken-derived files)
            raise NotByteLevelBPE("merges do not produce tokens in id order")
        last = rank
        made.add(tok)
    if any(len(t) > 1 and t not in made for t in ranks):
        raise NotByteLevelBPE("vocab holds multi-byte tokens no merge produces")
    specials = {c: i for i, c in added_ids.items()}
    roles = roles_from_config(config or {}, specials)
    try:
        return BPETokenizer(ranks, pattern=pattern, special_tokens=specials, roles=roles, name=name)
    except ValueError as e:  # e.g. a regex the tiktoken engine rejects, or missing single bytes
        raise NotByteLevelBPE(str(e)) from None


class HFTokenizer(Tokenizer):
    """A `tokenizers` library tokenizer (any tokenizer.json) behind zerollm's Tokenizer interface.

    Directory: `manifest.json` (algorithm "hf", roles) + `tokenizer.json`, kept byte for byte."""

    algorithm = "hf"

    def __init__(self, tokenizer_json: str, roles: dict[str, str] | None = None):
        from tokenizers import Tokenizer as _Tok

        self._json = tokenizer_json
        self._tok = _Tok.from_str(tokenizer_json)
        data = json.loads(tokenizer_json)
        self._special = {a["content"]: int(a["id"]) for a in data.get("added_tokens") or [] if a.get("special")}
        self._added = {int(a["id"]) for a in data.get("added_tokens") or []}  # literal text, special or not
        self._roles = dict(roles) if roles is not None else roles_from_config({}, self._special)
        self._decoders = _decoder_types(data.get("decoder"))
        self._id_bytes: dict[int, bytes] = {}

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def roles(self) -> dict[str, str]:
        return dict(self._roles)

    def _encode_plain(self, text: str, specials_as_text: bool) -> list[int]:
        self._tok.encode_special_tokens = specials_as_text
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        finally:
            self._tok.encode_special_tokens = False

    def encode(self, text: str, allowed_special="none") -> list[int]:
        if allowed_special == "all":
            return self._encode_plain(text, False)
        if allowed_special == "none" or not allowed_special:
            return self._encode_plain(text, True)
        import re

        unknown = set(allowed_special) - set(self._special)
        if unknown:
            raise ValueError(f"unknown special token(s) {sorted(unknown)}")
        pat = re.compile("|".join(map(re.escape, sorted(allowed_special, key=len, reverse=True))))
        out, pos = [], 0
        for m in pat.finditer(text):
            out += self._encode_plain(text[pos:m.start()], True) if m.start() > pos else []
            out.append(self._special[m.group()])
            pos = m.end()
        return out + (self._encode_plain(text[pos:], True) if pos < len(text) else [])

    def token_bytes(self, token_id: int) -> bytes:
        b = self._id_bytes.get(token_id)
        if b is None:
            piece = self._tok.id_to_token(token_id)
            if piece is None:
                raise ValueError(f"token id {token_id} out of range [0, {self.vocab_size})")
            if token_id in self._added:
                b = piece.encode("utf-8")
            elif "ByteLevel" in self._decoders and all(c in CHAR_TO_BYTE for c in piece):
                b = bytes(CHAR_TO_BYTE[c] for c in piece)
            elif "ByteFallback" in self._decoders and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                b = bytes([int(piece[3:5], 16)])
            elif "WordPiece" in self._decoders:
                b = piece[2:].encode() if piece.startswith("##") else (" " + piece).encode()
            else:
                b = piece.replace("\u2581", " ").encode("utf-8") if self._decoders & {"Metaspace", "Replace"} \
                    else piece.encode("utf-8")
            self._id_bytes[token_id] = b
        return b

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = [int(i) for i in ids]
        if "ByteLevel" in self._decoders:
            return b"".join(self.token_bytes(i) for i in ids)
        return self._tok.decode(ids, skip_special_tokens=False).encode("utf-8")

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        ids = [int(i) for i in ids]
        if "ByteLevel" in self._decoders:
            return self.decode_bytes(ids).decode("utf-8", errors=errors)
        return self._tok.decode(ids, skip_special_tokens=False)

    @property
    def hash(self) -> str:
        head = json.dumps({"algorithm": "hf", "roles": self._roles}, sort_keys=True).encode()
        return hashlib.sha256(head + b"\n" + self._json.encode("utf-8")).hexdigest()

    def save(self, directory: str | Path) -> Path:
        with atomic_dir(Path(directory), "tokenizer") as tmp:
            atomic_write_text(tmp / "tokenizer.json", self._json)
            write_manifest(tmp, "tokenizer", algorithm="hf", roles=self._roles, special_tokens=self._special,
                           vocab_size=self.vocab_size, hash=self.hash)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, manifest: dict | None = None) -> "HFTokenizer":
        manifest = manifest or read_manifest(directory, kind="tokenizer")
        path = Path(directory) / "tokenizer.json"
        tok = cls(path.read_text(encoding="utf-8"), manifest.get("roles"))
        if manifest.get("hash") and manifest["hash"] != tok.hash:
            raise ValueError(f"{directory}: tokenizer hash mismatch (files changed after saving?)")
        return tok


def _decoder_types(dec: dict | None) -> set[str]:
    if not dec:
        return set()
    if dec.get("type") == "Sequence":
        return set().union(*(_decoder_types(d) for d in dec.get("decoders", [])))
    return {dec.get("type")}


# how transformers 5 decides the specials around a text, by tokenizer_class (default: the post-processor)
_AFFIX_RULE = {**dict.fromkeys(("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast"),
                               "flags"),
               **dict.fromkeys(("GPTNeoXTokenizer", "GPTNeoXTokenizerFast"), "none")}


def special_affixes(config: dict, data: dict | None, tok: Tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(prefix ids, suffix ids) transformers puts around one text (module docstring)."""
    rule = _AFFIX_RULE.get(str(config.get("tokenizer_class")), "post_processor")
    if rule == "none":
        return (), ()
    flags = {k: config[k] for k in ("add_bos_token", "add_eos_token") if isinstance(config.get(k), bool)}
    if rule == "flags":
        ids = {}
        for flag, role in (("add_bos_token", "bos"), ("add_eos_token", "eos")):
            tid = getattr(tok, f"{role}_id")
            if tid is None and hasattr(tok, "model"):  # a bare SentencePiece model: its trainer's <s> / </s>
                tid = tok.model.trainer(f"{role}_id")
                tid = tid if tid is not None and tid >= 0 else None
            if flags.get(flag) and tid is None:
                raise InteropError(f"tokenizer_config.json: {flag} is true but the tokenizer has no {role} token")
            ids[role] = (tid,) if flags.get(flag) else ()
        return ids["bos"], ids["eos"]
    proc = (data or {}).get("post_processor") or {}
    for p in proc.get("processors", []) if proc.get("type") == "Sequence" else [proc]:
        if p.get("type") == "TemplateProcessing":
            ids = {k: v["ids"] for k, v in (p.get("special_tokens") or {}).items()}
            prefix, suffix, seen_text = [], [], False
            for piece in p.get("single", []):
                if "Sequence" in piece:
                    seen_text = True
                elif "SpecialToken" in piece:
                    (suffix if seen_text else prefix).extend(int(i) for i in ids[piece["SpecialToken"]["id"]])
            return tuple(prefix), tuple(suffix)
        if p.get("type") in ("BertProcessing", "RobertaProcessing"):
            return (int(p["cls"][1]),), (int(p["sep"][1]),)
    return (), ()


def load_hf_tokenizer(directory: str | Path) -> Tokenizer | None:
    """The tokenizer of an HF model directory (see module docstring), or None if it has none; its
    `affixes` are the BOS/EOS transformers adds to a text (`special_affixes`)."""
    tok, data = _load_hf_tokenizer(Path(directory))
    if tok is not None:
        config = read_json(Path(directory) / "tokenizer_config.json") \
            if (Path(directory) / "tokenizer_config.json").is_file() else {}
        tok.affixes = special_affixes(config, data, tok)
    return tok


def _load_hf_tokenizer(directory: Path) -> tuple[Tokenizer | None, dict | None]:
    config = read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").is_file() else {}
    tj = directory / "tokenizer.json"
    if tj.is_file():
        text = tj.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InteropError(f"{tj}: invalid JSON ({e})") from None
        try:
            return bpe_from_tokenizer_json(data, config), data
        except NotByteLevelBPE:
            specials = [a["content"] for a in data.get("added_tokens") or [] if a.get("special")]
            return HFTokenizer(text, roles_from_config(config, specials)), data
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        from zerollm.tokenizer.gpt2 import load_gpt2_bpe

        return load_gpt2_bpe(directory / "vocab.json", directory / "merges.txt"), None
    for name in ("tokenizer.model", "spiece.model"):  # Llama-2 style; rinna's GPT-NeoX uses spiece.model
        if (directory / name).is_file():
            from zerollm.tokenizer.spm import import_sentencepiece

            return import_sentencepiece(directory / name, special_tokens={}), None
    return None, None


def load_chat_template(directory: str | Path) -> str | None:
    """The chat template of a model or tokenizer directory: `chat_template.jinja` first (transformers 5),
    then `tokenizer_config.json` / our `hf_tokenizer_config.json` ("chat_template": str, or a list of
    {"name", "template"} where "default" is used)."""
    directory = Path(directory)
    for d in (directory, directory / "tokenizer"):
        if (d / CHAT_TEMPLATE_FILE).is_file():
            return (d / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
        for name in ("tokenizer_config.json", HF_CONFIG_FILE):
            if (d / name).is_file():
                t = read_json(d / name).get("chat_template")
                if isinstance(t, list):
                    t = next((x.get("template") for x in t if x.get("name") == "default"), None)
                if t:
                    return t
    return None


# ----------------------------------------------------------------------------------------------------------
# chat templates


@functools.lru_cache(maxsize=16)
def compile_chat_template(template: str):
    """Compile a chat template in transformers' sandboxed environment (cached)."""
    import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool = False,
                         tools: list[dict] | None = None, documents: list[dict] | None = None,
                         special_tokens: dict[str, str] | None = None, **kwargs) -> str:
    """The prompt string transformers' `apply_chat_template(..., tokenize=False)` renders.
    `special_tokens`: e.g. {"bos_token": "<|bos|>", "eos_token": "<|eos|>"}; `kwargs` (e.g.
    enable_thinking) are template variables and override them."""
    return compile_chat_template(template).render(messages=messages, tools=tools, documents=documents,
                                                  add_generation_prompt=add_generation_prompt,
                                                  **{**(special_tokens or {}), **kwargs})


# ----------------------------------------------------------------------------------------------------------
# export


def derive_merges(tok) -> list[tuple[bytes, bytes]]:
    """HF-style merges for a tiktoken-style rank table: each token's every split into two tokens, ordered
    by (merged rank, left rank, right rank) — transformers' `generate_merges`, as llama.cpp also does."""
    ranks = tok.mergeable_ranks
    found = []
    for token, rank in ranks.items():
        for k in range(1, len(token)):
            left = ranks.get(token[:k])
            if left is not None:
                right = ranks.get(token[k:])
                if right is not None:
                    found.append((rank, left, right))
    found.sort()
    by_rank = {r: t for t, r in ranks.items()}
    return [(by_rank[a], by_rank[b]) for _, a, b in found]


_FROM_LATIN1 = str.maketrans({chr(b): c for b, c in BYTE_TO_CHAR.items()})


def _chars(b: bytes) -> str:
    return b.decode("latin-1").translate(_FROM_LATIN1)


def wordpiece_tokenizer_json(tok) -> dict:
    """tokenizer.json for our `WordPieceTokenizer`: BERT normalizer + pre-tokenizer + WordPiece model, no
    post-processor (a decoder LM's ids carry no [CLS]/[SEP]), zerollm's specials as added tokens."""
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": tok.handle_chinese_chars,
                       "strip_accents": tok.strip_accents, "lowercase": tok.lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": tok.prefix, "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": tok.unk_token, "continuing_subword_prefix": tok.prefix,
                  "max_input_chars_per_word": tok.max_chars, "vocab": {t: i for i, t in enumerate(tok.vocab)}},
    }


def bpe_tokenizer_json(tok) -> dict:
    """tokenizer.json (tokenizers library format) for our `BPETokenizer`."""
    names = {t: _chars(t) for t in tok.mergeable_ranks}
    vocab = {names[t]: r for t, r in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1])}
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": {**byte_level, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [(names[a], names[b]) for a, b in derive_merges(tok)]},
    }


def write_hf_tokenizer(tok: Tokenizer, directory: str | Path, chat_template: str | None = None,
                       model_max_length: int | None = None, roles: dict[str, str] | None = None) -> None:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja into `directory` (which exists;
    the caller makes it atomic)."""
    directory = Path(directory)
    roles = dict(roles or tok.roles)
    config: dict = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if isinstance(tok, BPETokenizer):  # compact JSON: json's fast C encoder (indent= is pure Python)
        atomic_write_text(directory / "tokenizer.json", json.dumps(bpe_tokenizer_json(tok), ensure_ascii=False))
    elif isinstance(tok, HFTokenizer):
        atomic_write_text(directory / "tokenizer.json", tok._json)
    elif type(tok).__name__ == "WordPieceTokenizer":
        atomic_write_text(directory / "tokenizer.json", json.dumps(wordpiece_tokenizer_json(tok), ensure_ascii=False))
        roles.setdefault("unk", tok.unk_token)
    elif type(tok).__name__ == "SentencePieceTokenizer":
        tok.export_model(directory / "tokenizer.model")  # transformers converts it on load
        config["tokenizer_class"] = "LlamaTokenizer"
        pieces = tok.table.pieces
        roles = {"unk": pieces[0], "bos": pieces[1], "eos": pieces[2]} if len(pieces) > 2 else roles
    else:
        raise InteropError(f"cannot write {type(tok).__name__} as a Hugging Face tokenizer")
    for role in ("bos", "eos", "pad", "unk"):
        config[f"{role}_token"] = roles.get(role)
    config.update(add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False,
                  model_max_length=model_max_length or 1_000_000_000_000_000_019_884_624_838_656)
    config["added_tokens_decoder"] = {
        str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                 "special": True} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])}
    if chat_template:
        config["chat_template"] = chat_template
        atomic_write_text(directory / CHAT_TEMPLATE_FILE, chat_template)
    atomic_write_json(directory / "tokenizer_config.json", config)
