"""Read and write SentencePiece `.model` files without the `protobuf` package.

A `.model` file is one serialized `ModelProto` message (sentencepiece_model.proto; Kudo & Richardson 2018,
"SentencePiece: A simple and language independent subword tokenizer and detokenizer for Neural Text
Processing"). Protocol Buffers' wire format is small enough to write by hand: a message is a sequence of
fields, each a varint key `(field_number << 3) | wire_type` followed by the value:

    wire type 0  varint            int32/uint64/bool/enum (negative int32 = 10-byte two's complement)
    wire type 1  8 bytes           fixed64/double            (not used by ModelProto, kept if seen)
    wire type 2  varint length + bytes   string, bytes, nested message
    wire type 5  4 bytes           float (little endian)

The fields we need are listed in the schema tables below (names as in sentencepiece_model.proto). Fields we
do not know are kept as raw `(number, wire_type, value)` triples and written back unchanged, so reading and
writing a model is lossless. `NormalizerSpec.precompiled_charsmap` is kept as opaque bytes; `CharsMap`
below can *apply* it (it is a Darts double-array trie of UTF-8 keys plus a blob of replacement strings).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import atomic_write_bytes

# Piece types (ModelProto.SentencePiece.Type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
MODEL_TYPE_IDS = {v: k for k, v in MODEL_TYPES.items()}

# name -> (field number, kind, proto2 default). kind: str/bytes/bool/int/uint/float/enum, or list:<kind>.
TRAINER_SPEC = {
    "input": (1, "list:str", []), "input_format": (7, "str", ""), "model_prefix": (2, "str", ""),
    "model_type": (3, "enum", 1), "vocab_size": (4, "int", 8000), "accept_language": (5, "list:str", []),
    "self_test_sample_size": (6, "int", 0), "character_coverage": (10, "float", 0.9995),
    "input_sentence_size": (11, "uint", 0), "shuffle_input_sentence": (19, "bool", True),
    "seed_sentencepiece_size": (14, "int", 1000000), "shrinking_factor": (15, "float", 0.75),
    "max_sentence_length": (18, "int", 4192), "num_threads": (16, "int", 16),
    "num_sub_iterations": (17, "int", 2), "max_sentencepiece_length": (20, "int", 16),
    "split_by_unicode_script": (21, "bool", True), "split_by_number": (23, "bool", True),
    "split_by_whitespace": (22, "bool", True), "treat_whitespace_as_suffix": (24, "bool", False),
    "allow_whitespace_only_pieces": (26, "bool", False), "split_digits": (25, "bool", False),
    "control_symbols": (30, "list:str", []), "user_defined_symbols": (31, "list:str", []),
    "required_chars": (36, "str", ""), "byte_fallback": (35, "bool", False),
    "vocabulary_output_piece_score": (32, "bool", True), "hard_vocab_limit": (33, "bool", True),
    "use_all_vocab": (34, "bool", False), "unk_id": (40, "int", 0), "bos_id": (41, "int", 1),
    "eos_id": (42, "int", 2), "pad_id": (43, "int", -1), "unk_piece": (45, "str", "<unk>"),
    "bos_piece": (46, "str", "<s>"), "eos_piece": (47, "str", "</s>"), "pad_piece": (48, "str", "<pad>"),
    "unk_surface": (44, "str", " \u2047 "), "train_extremely_large_corpus": (54, "bool", False),
}
NORMALIZER_SPEC = {
    "name": (1, "str", ""), "precompiled_charsmap": (2, "bytes", b""), "add_dummy_prefix": (3, "bool", True),
    "remove_extra_whitespaces": (4, "bool", True), "escape_whitespaces": (5, "bool", True),
    "normalization_rule_tsv": (6, "str", ""),
}
_WIRE = {"str": 2, "bytes": 2, "bool": 0, "int": 0, "uint": 0, "enum": 0, "float": 5}


# ---------------------------------------------------------------- wire format
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long in protobuf message")


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int32/int64 negatives are sign-extended to 64 bits
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse_fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Split a message into `(field_number, wire_type, value)`; value is int (varint), bytes otherwise."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            value, pos = _read_varint(buf, pos)
        elif wt == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt} (field {num})")
        if pos > len(buf):
            raise ValueError(f"truncated protobuf field {num}")
        fields.append((num, wt, value))
    return fields


def _field(num: int, wt: int, value) -> bytes:
    key = _varint((num << 3) | wt)
    if wt == 0:
        return key + _varint(int(value))
    if wt == 2:
        return key + _varint(len(value)) + bytes(value)
    return key + bytes(value)  # fixed32 / fixed64 already packed


def _decode_scalar(kind: str, wt: int, value):
    if kind == "str":
        return bytes(value).decode("utf-8")
    if kind == "bytes":
        return bytes(value)
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return struct.unpack("<f", value)[0]
    if kind == "int" and value >= 1 << 63:
        return value - (1 << 64)
    return int(value)


def _encode_scalar(kind: str, value) -> object:
    if kind == "str":
        return value.encode("utf-8")
    if kind == "float":
        return struct.pack("<f", value)
    return value


def _read_spec(buf: bytes, schema: dict) -> tuple[dict, list]:
    """Known fields into a dict (only those present); unknown ones as raw triples."""
    by_num = {num: (name, kind) for name, (num, kind, _) in schema.items()}
    values, extra = {}, []
    for num, wt, value in parse_fields(buf):
        if num not in by_num:
            extra.append((num, wt, value))
            continue
        name, kind = by_num[num]
        if kind.startswith("list:"):
            values.setdefault(name, []).append(_decode_scalar(kind[5:], wt, value))
        else:
            values[name] = _decode_scalar(kind, wt, value)
    return values, extra


def _write_spec(values: dict, extra: list, schema: dict) -> bytes:
    out = bytearray()
    for name, value in values.items():
        if name not in schema:
            raise KeyError(f"unknown spec field {name!r}")
        num, kind, _ = schema[name]
        for v in (value if kind.startswith("list:") else [value]):
            k = kind[5:] if kind.startswith("list:") else kind
            out += _field(num, _WIRE[k], _encode_scalar(k, v))
    for num, wt, value in extra:
        out += _field(num, wt, value)
    return bytes(out)


# ---------------------------------------------------------------- the model
@dataclass
class SentencePieceModel:
    """The parts of a ModelProto zerollm uses. `trainer_spec` / `normalizer_spec` hold only the fields
    present in the file; `spec_value()` fills in the proto2 defaults."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type)
    trainer_spec: dict = field(default_factory=dict)
    normalizer_spec: dict = field(default_factory=dict)
    denormalizer_spec: dict | None = None
    extra: list = field(default_factory=list)  # unknown top-level fields (e.g. self_test_data), raw
    trainer_extra: list = field(default_factory=list)
    normalizer_extra: list = field(default_factory=list)

    def trainer(self, name: str):
        return self.trainer_spec.get(name, TRAINER_SPEC[name][2])

    def normalizer(self, name: str):
        return self.normalizer_spec.get(name, NORMALIZER_SPEC[name][2])

    @property
    def model_type(self) -> str:
        return MODEL_TYPES.get(self.trainer("model_type"), "unknown")

    # -- bytes <-> model
    @classmethod
    def from_bytes(cls, data: bytes) -> "SentencePieceModel":
        pieces, m = [], cls(pieces=[])
        for num, wt, value in parse_fields(data):
            if num == 1 and wt == 2:
                piece, score, ptype = "", 0.0, NORMAL
                for n, w, v in parse_fields(value):
                    if n == 1:
                        piece = bytes(v).decode("utf-8")
                    elif n == 2:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        ptype = int(v)
                pieces.append((piece, score, ptype))
            elif num == 2 and wt == 2:
                m.trainer_spec, m.trainer_extra = _read_spec(value, TRAINER_SPEC)
            elif num == 3 and wt == 2:
                m.normalizer_spec, m.normalizer_extra = _read_spec(value, NORMALIZER_SPEC)
            elif num == 5 and wt == 2:
                m.denormalizer_spec, _ = _read_spec(value, NORMALIZER_SPEC)
            else:
                m.extra.append((num, wt, value))
        if not pieces:
            raise ValueError("not a SentencePiece model: no pieces")
        m.pieces = pieces
        return m

    def to_bytes(self) -> bytes:
        out = bytearray()
        for piece, score, ptype in self.pieces:
            body = _field(1, 2, piece.encode("utf-8")) + _field(2, 5, struct.pack("<f", score))
            if ptype != NORMAL:
                body += _field(3, 0, ptype)
            out += _field(1, 2, body)
        out += _field(2, 2, _write_spec(self.trainer_spec, self.trainer_extra, TRAINER_SPEC))
        out += _field(3, 2, _write_spec(self.normalizer_spec, self.normalizer_extra, NORMALIZER_SPEC))
        if self.denormalizer_spec is not None:
            out += _field(5, 2, _write_spec(self.denormalizer_spec, [], NORMALIZER_SPEC))
        for num, wt, value in self.extra:
            out += _field(num, wt, value)
        return bytes(out)


def read_model(path: str | Path) -> SentencePieceModel:
    data = Path(path).read_bytes()
    try:
        return SentencePieceModel.from_bytes(data)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{path}: not a valid SentencePiece .model file ({e})") from None


def write_model(model: SentencePieceModel, path: str | Path) -> None:
    atomic_write_bytes(path, model.to_bytes())


# ---------------------------------------------------------------- precompiled charsmap
class CharsMap:
    """Apply a SentencePiece `precompiled_charsmap` (e.g. the `nmt_nfkc` rules).

    Layout: uint32 little-endian size of the trie blob, the trie (darts-clone double array of uint32 units,
    keys are UTF-8 strings, values are offsets into the second blob), then NUL-separated replacements.
    We walk the trie once at load and keep a plain `{key: replacement}` dict; `normalize` then does what
    SentencePiece's `Normalizer::NormalizePrefix` does: at every position take the longest matching key.
    """

    def __init__(self, blob: bytes):
        import numpy as np

        (trie_size,) = struct.unpack_from("<I", blob, 0)
        units = np.frombuffer(blob[4:4 + trie_size], dtype="<u4").astype(np.int64)
        strings = blob[4 + trie_size:]
        self.table: dict[str, str] = {}
        labels = np.arange(1, 256)
        # walk the trie level by level (all nodes of one depth at once); a node is (array index, key)
        frontier, keys = np.zeros(1, dtype=np.int64), [b""]
        while len(frontier):
            unit = units[frontier]
            base = frontier ^ ((unit >> 10) << ((unit & (1 << 9)) >> 6))
            for k in np.nonzero((unit >> 8) & 1)[0].tolist():  # has_leaf: the value sits at `base`
                if keys[k]:
                    value = int(units[base[k]]) & 0x7FFFFFFF
                    end = strings.index(b"\0", value)
                    self.table[keys[k].decode("utf-8", "replace")] = strings[value:end].decode("utf-8", "replace")
            next_f, next_k = [], []
            for lo in range(0, len(base), 4096):  # children: base ^ label whose unit carries that label
                child = base[lo:lo + 4096, None] ^ labels[None, :]
                inside = child < len(units)
                got = units[np.where(inside, child, 0)] & ((1 << 31) | 0xFF)
                p, l = np.nonzero(inside & (got == labels[None, :]))
                next_f.append(child[p, l])
                next_k += [keys[lo + i] + bytes((lab,)) for i, lab in zip(p.tolist(), labels[l].tolist())]
            frontier, keys = np.concatenate(next_f) if next_f else np.zeros(0, np.int64), next_k
        self.max_len = max((len(k) for k in self.table), default=0)
        self.first_chars = frozenset(k[0] for k in self.table)

    def normalize_prefix(self, text: str, i: int) -> tuple[str, int]:
        """(replacement, number of chars consumed) at position i: the longest key, else the char itself."""
        if text[i] in self.first_chars:
            for n in range(min(self.max_len, len(text) - i), 0, -1):
                rep = self.table.get(text[i:i + n])
                if rep is not None:
                    return rep, n
        return text[i], 1
