"""Schema-guided JSON decoding: the model fills in the values, the schema fixes everything else.

The engine has no constrained decoder (engine/constrained.py) yet, so tool calls are decoded here, through
one function, `decode_tool_call(...)`. Decoding walks the JSON Schema (`_walk`) with a *driver*:

* `ModelDriver` asks the model. Punctuation and keys are forced (appended without sampling); a choice among
  fixed literals (enum, boolean, tool name) is made by the log-likelihood of each literal's tokens; a string
  or number is generated token by token with every token the schema forbids masked out (a string may not
  contain `"`, `\\` or control characters; a number's text must stay a prefix of a JSON number). A value
  ends when the model puts more probability on the token that would close it (logsumexp over the tokens
  starting with the closing character) than on any allowed token. So the result is JSON valid under the
  schema, whatever the model's weights, even a random tiny model.
* `json_segments` walks a known value the same way and records the same segmentation; `encode_json` uses it so
  training data is tokenized exactly as the decoder will see it (forced text and values are encoded as
  separate pieces, never merged across a boundary by the tokenizer).

Supported schema keywords: type (object, array, string, number, integer, boolean, null, or a list: the
first non-null is used), properties, required (optional properties may be closed off), items, minItems,
maxItems, enum, const, minLength, maxLength, minimum, maximum (numbers are clamped into range). Not
enforced: pattern, format, anyOf/oneOf (the first alternative is used), additionalProperties (never
generated). `validate(value, schema)` checks the same subset and is used for tool arguments that did not
come through this decoder.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import regex
import torch

from zerollm.model.kv_cache import KVCache

MAX_STRING_TOKENS = 64
MAX_NUMBER_CHARS = 24
MAX_ITEMS = 16
_NUMBER = regex.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INTEGER = regex.compile(r"-?(?:0|[1-9][0-9]*)")


class SchemaError(ValueError):
    pass


# ---- validation ---------------------------------------------------------------------------------------
def _type_of(schema: dict) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t is None and ("anyOf" in schema or "oneOf" in schema):
        return _type_of((schema.get("anyOf") or schema.get("oneOf"))[0])
    if t is None and "properties" in schema:
        return "object"
    return t


def validate(value, schema: dict, path: str = "$") -> list[str]:
    """Errors (empty if valid) of `value` against the supported JSON Schema subset."""
    errs: list[str] = []
    if "const" in schema and value != schema["const"]:
        return [f"{path}: must be {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: must be one of {schema['enum']!r}, got {value!r}"]
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "null": lambda v: v is None}
    if types and not any(checks.get(t, lambda v: True)(value) for t in types):
        return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r}"]
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{path}: missing required property {key!r}")
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                errs += validate(v, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected property {key!r}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            errs.append(f"{path}: has {len(value)} items, outside [{schema.get('minItems', 0)}, "
                        f"{schema.get('maxItems', 'inf')}]")
        for i, v in enumerate(value):
            errs += validate(v, schema.get("items", {}), f"{path}[{i}]")
    elif isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            errs.append(f"{path}: length {len(value)} outside [{schema.get('minLength', 0)}, "
                        f"{schema.get('maxLength', 'inf')}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            errs.append(f"{path}: {value} outside [{schema.get('minimum')}, {schema.get('maximum')}]")
    return errs


# ---- the schema walk ----------------------------------------------------------------------------------
def _walk(schema: dict, d) -> object:
    """Produce one JSON value of `schema` through driver `d` (force / choose / string / number / close_here)."""
    if "const" in schema:
        d.force(json.dumps(schema["const"], ensure_ascii=False))
        return schema["const"]
    if "enum" in schema:
        options = list(schema["enum"])
        if not options:
            raise SchemaError("enum with no options")
        return options[d.choose([json.dumps(o, ensure_ascii=False) for o in options], options)]
    t = _type_of(schema)
    if t == "boolean":
        return [True, False][d.choose(["true", "false"], [True, False])]
    if t == "null":
        d.force("null")
        return None
    if t == "string":
        d.force('"')
        s = d.string(schema)
        d.force('"')
        return s
    if t in ("number", "integer"):
        return d.number(schema, integer=(t == "integer"))
    if t == "array":
        items, out = schema.get("items", {}), []
        lo, hi = schema.get("minItems", 0), min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS)
        d.force("[")
        while len(out) < hi and not (len(out) >= lo and d.close_here("]", len(out))):
            if out:
                d.force(", ")
            out.append(_walk(items, d))
        d.force("]")
        return out
    if t == "object" or t is None:
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        out: dict = {}
        d.force("{")
        keys = list(props)
        for i, key in enumerate(keys):
            if key not in required and not (set(keys[i:]) & required) and d.close_here("}", key):
                break
            d.force((", " if out else "") + json.dumps(key, ensure_ascii=False) + ": ")
            out[key] = _walk(props[key], d)
        d.force("}")
        return out
    raise SchemaError(f"unsupported schema type {t!r}")


def _clamp(x, schema):
    lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    return min(max(x, lo), hi)


class _Segments:
    """Collects (text, is_forced) segments; consecutive forced text is merged, as the decoder merges it."""

    def __init__(self):
        self.segments: list[tuple[str, bool]] = []
        self.pending = ""

    def force(self, text: str) -> None:
        self.pending += text

    def flush(self) -> None:
        if self.pending:
            self.segments.append((self.pending, True))
            self.pending = ""

    def value(self, text: str) -> None:
        self.flush()
        if text:
            self.segments.append((text, False))


def json_segments(value, schema: dict, prefix: str = "", suffix: str = "") -> list[tuple[str, bool]]:
    """The (text, is_forced) pieces of `prefix + json(value) + suffix`, cut where `ModelDriver` cuts."""
    errs = validate(value, schema)
    if errs:
        raise SchemaError("; ".join(errs))
    d = _Segments()
    d.force(prefix)
    _walk_value(schema, d, value)
    d.force(suffix)
    d.flush()
    return d.segments


def encode_json(tokenizer, value, schema: dict, prefix: str = "", suffix: str = "") -> list[int]:
    """Token ids of `prefix + json(value) + suffix`, each piece encoded on its own exactly as the
    constrained decoder produces it (so a model trained on these ids sees what it will decode)."""
    return [i for text, _ in json_segments(value, schema, prefix, suffix) for i in tokenizer.encode(text)]


def _walk_value(schema: dict, d: _Segments, value):
    """`_walk` specialized to a known value: same forced text, same segment boundaries."""
    if "const" in schema:
        d.force(json.dumps(schema["const"], ensure_ascii=False))
        return value
    t = _type_of(schema)
    if "enum" in schema or t == "boolean":
        d.value(json.dumps(value, ensure_ascii=False))
    elif t == "null":
        d.force("null")
    elif t == "string":
        if any(c in value for c in '"\\') or any(ord(c) < 0x20 for c in value):
            raise SchemaError(f"string {value!r} has a quote, backslash or control character, which the "
                              "constrained decoder never generates")
        d.force('"')
        d.flush()
        d.value(value)
        d.force('"')
    elif t in ("number", "integer"):
        d.value(json.dumps(value))
    elif t == "array":
        d.force("[")
        lo, hi = schema.get("minItems", 0), min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS)
        for i, v in enumerate(value):
            if lo <= i < hi:
                d.flush()  # the decoder decides "close here?" at this point
            if i:
                d.force(", ")
            _walk_value(schema.get("items", {}), d, v)
        if lo <= len(value) < hi:
            d.flush()
        d.force("]")
    else:
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        d.force("{")
        keys, first = list(props), True
        for i, key in enumerate(keys):
            optional_tail = key not in required and not (set(keys[i:]) & required)
            if optional_tail:
                d.flush()
                if key not in value:
                    break
            d.force(("" if first else ", ") + json.dumps(key, ensure_ascii=False) + ": ")
            first = False
            _walk_value(props[key], d, value[key])
        d.force("}")
    return value


# ---- decoding with the model ----------------------------------------------------------------------------
class _Vocab:
    """Per-tokenizer tables: each token's bytes and which tokens may appear inside a string or number."""

    _cache: dict[int, "_Vocab"] = {}

    def __init__(self, tokenizer, n_logits: int):
        V = tokenizer.vocab_size
        special = set(tokenizer.special_tokens.values())
        self.bytes = [b"" if i in special else tokenizer.token_bytes(i) for i in range(V)]
        self.n_logits = n_logits
        self.str_ok = torch.zeros(n_logits, dtype=torch.bool)
        self.first = torch.full((n_logits,), -1, dtype=torch.long)  # first byte of each token (-1: none)
        self.number_ids: list[int] = []
        for i, b in enumerate(self.bytes):
            if not b:
                continue
            self.first[i] = b[0]
            self.str_ok[i] = b'"' not in b and b"\\" not in b and min(b) >= 0x20
            if all(c in b"0123456789.-+eE" for c in b):
                self.number_ids.append(i)

    @classmethod
    def get(cls, tokenizer, n_logits: int) -> "_Vocab":
        key = id(tokenizer)
        v = cls._cache.get(key)
        if v is None or v.n_logits != n_logits:
            v = cls._cache[key] = cls(tokenizer, n_logits)
        return v

    def starting_with(self, char: str) -> torch.Tensor:
        return self.first == char.encode()[0]


class ModelDriver:
    """Drives `_walk` with a model: forced text is fed, values are generated under token masks."""

    def __init__(self, model, tokenizer, prompt_ids: list[int], max_new_tokens: int = 256,
                 temperature: float = 0.0, generator: torch.Generator | None = None):
        self.model, self.tok = model, tokenizer
        self.temperature, self.generator = temperature, generator
        self.device = next(model.parameters()).device
        self.cache = KVCache.for_model(model, 1, max_len=min(model.cfg.max_seq_len, len(prompt_ids) + max_new_tokens))
        self.ids: list[int] = []  # generated + forced ids after the prompt
        self.pending = ""
        self.logits = None  # (V,) next-token logits
        self.vocab = None
        self._feed(list(prompt_ids))
        self.vocab = _Vocab.get(tokenizer, self.logits.shape[-1])

    # feeding and scoring
    def _forward(self, ids: list[int]) -> torch.Tensor:
        if self.cache.pos + len(ids) > self.cache.max_len:
            raise ValueError(f"tool call does not fit in the context window ({self.cache.max_len} tokens)")
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            hidden = self.model(x, cache=self.cache, return_hidden=True)  # (1, T, D)
            return self.model.logits(hidden[0]).float()  # (T, V)

    def _feed(self, ids: list[int], record: bool = True) -> None:
        if ids:
            self.logits = self._forward(ids)[-1]
            if record and self.vocab is not None:
                self.ids += ids

    def flush(self) -> None:
        if self.pending:
            text, self.pending = self.pending, ""
            self._feed(self.tok.encode(text))

    def force(self, text: str) -> None:
        self.pending += text

    def _logprob(self, ids: list[int]) -> float:
        """Log-probability of `ids` following the current position; the cache is rolled back after."""
        pos, logits = self.cache.pos, self.logits
        lp = torch.log_softmax(logits, -1)[ids[0]].item()
        if len(ids) > 1:
            out = torch.log_softmax(self._forward(ids[:-1]), -1)  # (T-1, V)
            lp += out.gather(1, torch.tensor(ids[1:], device=out.device)[:, None]).sum().item()
            self.cache.pos = pos  # slots past pos are simply overwritten later
        return lp

    def _pick(self, scores: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(torch.argmax(scores))
        p = torch.softmax(scores / self.temperature, -1)
        return int(torch.multinomial(p, 1, generator=self.generator))

    # the driver interface used by _walk
    def choose(self, texts: list[str], options: list) -> int:
        self.flush()
        encoded = [self.tok.encode(t) for t in texts]
        scores = torch.tensor([self._logprob(ids) for ids in encoded])
        k = self._pick(scores)
        self._feed(encoded[k])
        return k

    def close_here(self, close: str, _where) -> bool:
        """Does the model prefer to close the array/object now rather than add another element?"""
        self.flush()
        lp = torch.log_softmax(self.logits, -1)
        closing = self.vocab.starting_with(close)
        other = ~closing & (self.vocab.first >= 0)
        both = torch.stack([torch.logsumexp(lp[closing], 0), torch.logsumexp(lp[other], 0)])
        return self._pick(both) == 0

    def _step(self, allowed: torch.Tensor, end_mask: torch.Tensor | None) -> int | None:
        """Pick an allowed token, or None when the value should end (mass of `end_mask` tokens wins)."""
        scores = self.logits.masked_fill(~allowed, float("-inf"))
        end = torch.logsumexp(self.logits[end_mask], 0) if end_mask is not None and end_mask.any() else None
        if end is not None:
            scores = torch.cat([scores, end.view(1)])
        if not torch.isfinite(scores).any():
            return None
        k = self._pick(scores)
        return None if k == self.vocab.n_logits else k

    def string(self, schema: dict) -> str:
        self.flush()
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength", 10 ** 9)
        data = b""
        for _ in range(MAX_STRING_TOKENS):
            n = len(data.decode("utf-8", errors="replace"))
            if n >= hi:
                break
            k = self._step(self.vocab.str_ok, self.vocab.starting_with('"') if n >= lo else None)
            if k is None:
                break
            data += self.vocab.bytes[k]
            self._feed([k])
        text = data.decode("utf-8", errors="replace")[:hi] if hi < 10 ** 9 else data.decode("utf-8", "replace")
        return text + "x" * max(0, lo - len(text))  # min length forced if the token budget ran out

    def number(self, schema: dict, integer: bool):
        self.flush()
        pattern = _INTEGER if integer else _NUMBER
        end_mask = self.vocab.first >= 0
        for c in "0123456789.-+eE":
            end_mask &= ~self.vocab.starting_with(c)
        text = ""
        while len(text) < MAX_NUMBER_CHARS:
            allowed = torch.zeros_like(self.vocab.str_ok)
            cand = [i for i in self.vocab.number_ids
                    if pattern.fullmatch(text + self.vocab.bytes[i].decode(), partial=True)]
            allowed[cand] = True
            complete = bool(pattern.fullmatch(text))
            k = self._step(allowed, end_mask if complete else None)
            if k is None:
                break
            text += self.vocab.bytes[k].decode()
            self._feed([k])
        if not pattern.fullmatch(text):  # ran out of room mid-number: complete it
            text = text.rstrip("eE+-.") or "0"
            text = text if pattern.fullmatch(text) else "0"
        value = int(text) if integer else float(text)
        if not integer and value == int(value) and "." not in text and "e" not in text.lower():
            value = int(value)
        clamped = _clamp(value, schema)
        if clamped != value:  # out of range: the clamped value replaces what was generated
            value = clamped
        return value


@dataclass
class ToolCall:
    name: str
    arguments: dict
    ids: list[int] = field(default_factory=list)  # tokens of the call (after the prompt), for the transcript

    def to_openai(self, call_id: str) -> dict:
        return {"id": call_id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


def tool_call_schema(tools) -> tuple[list[str], list[dict]]:
    names = [t.name for t in tools]
    if not names:
        raise SchemaError("no tools to call")
    return names, [t.parameters for t in tools]


def call_prefix() -> str:
    return '{"name": '


def decode_tool_call(model, tokenizer, prompt_ids: list[int], tools, *, temperature: float = 0.0,
                     seed: int | None = None, max_new_tokens: int = 256, backend: str = "auto") -> ToolCall:
    """Decode `{"name": <one of the tools>, "arguments": <valid under that tool's schema>}` after
    `prompt_ids` (which end where the call's JSON starts, e.g. after the `<|tool_call|>` token).

    backend: "engine" = the engine's automaton-based constrained decoder (engine/constrained.py), "walk" =
    the schema walk in this module, "auto" = the engine's when it is installed, else the walk."""
    names, schemas = tool_call_schema(tools)
    if backend in ("auto", "engine"):
        try:
            from zerollm.engine.constrained import JSONSchemaConstraint, generate_constrained
        except ImportError:
            if backend == "engine":
                raise
        else:
            from zerollm.engine.generate import GenerationConfig

            schema = {"anyOf": [{"type": "object", "properties": {"name": {"const": n}, "arguments": s},
                                 "required": ["name", "arguments"]} for n, s in zip(names, schemas)]}
            out = generate_constrained(model, tokenizer, prompt_ids, JSONSchemaConstraint(schema, tokenizer),
                                       GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                                        seed=seed))
            call = json.loads(tokenizer.decode(out))
            return ToolCall(call["name"], call["arguments"], out)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=next(model.parameters()).device)
        gen.manual_seed(seed)
    d = ModelDriver(model, tokenizer, prompt_ids, max_new_tokens, temperature, gen)
    d.force(call_prefix())
    k = d.choose([json.dumps(n, ensure_ascii=False) for n in names], names)
    d.force(', "arguments": ')
    args = _walk(schemas[k], d)
    d.force("}")
    d.flush()
    return ToolCall(names[k], args, d.ids)


def encode_tool_call(tokenizer, name: str, arguments: dict, tools) -> list[int]:
    """Ids of a tool call's JSON segmented exactly as `decode_tool_call` produces it (for training data)."""
    names, schemas = tool_call_schema(tools)
    if name not in names:
        raise SchemaError(f"unknown tool {name!r}")
    schema = schemas[names.index(name)]
    segs = [(call_prefix(), True), (json.dumps(name, ensure_ascii=False), False)]
    segs += json_segments(arguments, schema, prefix=', "arguments": ', suffix="}")
    return [i for text, _ in segs for i in tokenizer.encode(text)]
