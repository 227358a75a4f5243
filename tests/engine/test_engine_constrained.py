"""Constrained decoding: every output parses and validates (JSON Schema) or fullmatches (regex), even from a
random tiny model, on a BPE tokenizer trained on JSON so tokens span punctuation (`":"`, `"},` ...)."""
from __future__ import annotations

import json
import random
import re

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.engine.constrained import JSONSchemaConstraint, RegexConstraint, regex_ast
from zerollm.engine.engine import Engine, Request
from zerollm.engine.generate import GenerationConfig
from zerollm.model.transformer import Transformer


jsonschema = pytest.importorskip("jsonschema")


def generate_constrained(model, tok, prompt, constraint, cfg) -> list[int]:
    """One constrained request through the Engine; the constraint, not stop ids, ends the output."""
    cfg = GenerationConfig(**{**cfg.__dict__, "stop_token_ids": []})
    return Engine(model, tok, max_batch_size=1).submit(Request(prompt, cfg, constraint=constraint)).result().token_ids


@pytest.fixture(scope="module")
def json_tok():
    from zerollm.tokenizer.bpe import train_bpe

    rng = random.Random(0)
    docs = []
    for _ in range(400):
        obj = {"name": rng.choice(["alice", "bob", "carol"]), "age": rng.randint(0, 99),
               "tags": [rng.choice(["x", "y", "zz"]) for _ in range(rng.randint(0, 3))],
               "address": {"city": rng.choice(["Paris", "Tokyo"]), "zip": str(rng.randint(1000, 9999))},
               "ok": rng.random() < 0.5, "score": round(rng.uniform(-5, 5), 2)}
        docs.append(json.dumps(obj) + json.dumps(obj, separators=(",", ":")))
    return train_bpe(docs, vocab_size=600, show_progress=False, pattern=r".{1,6}")


@pytest.fixture(scope="module")
def model(json_tok):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=json_tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32,
                      max_seq_len=160, init_std=0.5)
    return Transformer(cfg).eval()


def test_tokenizer_has_tokens_spanning_json_punctuation(json_tok):
    pieces = {json_tok.token_bytes(i) for i in range(256, json_tok.vocab_size - 16)}
    assert any(b'":' in p for p in pieces) and any(b'"' in p and b"," in p for p in pieces)


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                      "age": {"type": "integer", "minimum": 0},
                                      "ok": {"type": "boolean"}}, "required": ["name", "age"]},
    {"type": "object", "properties": {
        "address": {"type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo"]},
                                                     "zip": {"type": "string", "pattern": "[0-9]{4}"}},
                    "required": ["city", "zip"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
        "score": {"type": "number"}},
     "required": ["address", "tags"]},
    {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}, {"const": "k"}]}, "maxItems": 4},
    {"type": "object", "properties": {"opt1": {"type": "number"}, "opt2": {"type": "string"},
                                      "deep": {"type": "object", "properties": {"v": {}}, "required": ["v"]}}},
]


@pytest.mark.parametrize("schema_i", range(len(SCHEMAS)))
def test_json_schema_output_always_validates(json_tok, model, schema_i):
    schema = SCHEMAS[schema_i]
    c = JSONSchemaConstraint(schema, json_tok)
    prompt = json_tok.encode('{"name": "x"}\n')
    for seed in range(4):
        for cfg in (GenerationConfig(max_new_tokens=60, temperature=1.3, seed=seed),
                    GenerationConfig(max_new_tokens=25 + 5 * seed, temperature=0)):
            ids = generate_constrained(model, json_tok, prompt, c, cfg)
            text = json_tok.decode(ids)
            assert len(ids) <= cfg.max_new_tokens
            jsonschema.validate(json.loads(text), schema)  # raises on an invalid output


@pytest.mark.parametrize("pattern", [r"\d{3}-[a-z]+", r"(yes|no|maybe)!?", r"[A-Z][a-z]{0,5}( [A-Z][a-z]*)*",
                                     r"\w+@\w+\.(com|org)", r"-?(0|[1-9]\d*)(\.\d+)?"])
def test_regex_output_always_matches(json_tok, model, pattern):
    c = RegexConstraint(pattern, json_tok)
    for seed in range(5):
        ids = generate_constrained(model, json_tok, [65, 66], c,
                                   GenerationConfig(max_new_tokens=20, temperature=1.5, seed=seed))
        assert re.fullmatch(pattern, json_tok.decode(ids)), json_tok.decode(ids)


def test_mask_matches_definition(json_tok):
    """A token is allowed iff text_so_far + token stays a prefix of some match."""
    c = JSONSchemaConstraint(SCHEMAS[0], json_tok)
    prefix = '{"name": "al'
    mask = c.allowed_mask(prefix)
    for tid in range(json_tok.vocab_size - 16):
        try:
            piece = json_tok.token_bytes(tid).decode()
        except UnicodeDecodeError:
            assert not mask[tid]
            continue
        st = c.begin()
        st.feed_text(prefix + piece)
        assert bool(mask[tid]) == (st.state >= 0), piece
    assert not mask[json_tok.eos_id]
    assert c.allowed_mask('{"name": "al", "age": 3}')[json_tok.eos_id]


def test_regex_parser_agrees_with_re_on_samples():
    class Chars:
        eos_id, vocab_size, special_tokens = 128, 129, {"<eos>": 128}

        def token_bytes(self, i):
            return bytes([i])

    rng = random.Random(1)
    for pattern in [r"a[b-d]*e?", r"(ab|c){2,3}", r"[^x]\s\S", r"x{0,2}y+", r"\.\*[\]a]"]:
        c = RegexConstraint(pattern, Chars())
        for _ in range(200):
            s = "".join(rng.choice("abcdexy .*]\t") for _ in range(rng.randint(0, 6)))
            st = c.begin()
            st.feed_text(s)
            assert st.accepting == bool(re.fullmatch(pattern, s)), (pattern, s)
    with pytest.raises(ValueError):
        regex_ast("(ab")


class _DigitTok:
    """Eleven single-character tokens: 0-9 and '-'."""
    special_tokens: dict = {}
    eos_id = None
    vocab_size = 11

    def token_bytes(self, i):
        return "0123456789-"[i].encode()


@pytest.mark.parametrize("lo,hi", [(1, 7), (0, None), (None, -3), (-15, 240), (37, 1234), (5, 5), (100, 100000),
                                   (-999, -10)])
def test_integer_bounds_are_exact(lo, hi):
    from zerollm.engine.constrained import Constraint
    from zerollm.engine.json_schema import JSONSchemaCompiler

    schema = {"type": "integer", **({"minimum": lo} if lo is not None else {}),
              **({"maximum": hi} if hi is not None else {})}
    c = Constraint(JSONSchemaCompiler().compile(schema), _DigitTok())
    for text in [str(v) for v in range(-1500, 1500)] + ["01", "-0", "00", "-", "007", "123456"]:
        st = c.begin()
        st.feed_text(text)
        v = int(text) if text not in ("-",) else None
        valid = v is not None and str(v) == text and (lo is None or v >= lo) and (hi is None or v <= hi)
        assert st.accepting == valid, (schema, text)
