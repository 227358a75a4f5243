"""JSON Schema for constrained decoding: the schema → grammar AST compiler, and the validator.

    JSONSchemaCompiler().compile(schema) ─▶ AST (regex_grammar node shapes) ─▶ constrained.Constraint
    validate(value, schema) ─▶ [error messages naming the JSON path]   (empty = valid)

The compiler handles: type (object, array, string, number, integer, boolean, null, or a list of them),
properties (in schema order; optional ones may be left out), required, items, minItems, maxItems, enum,
const, anyOf/oneOf, a one-element allOf, string minLength/maxLength/pattern, integer minimum/maximum (and
the exclusive forms) exactly (a digit-range grammar), number `minimum >= 0` (no minus sign),
additionalProperties: false on a property-less object; an untyped value `{}` allows any JSON up to depth 2.
Not enforced while decoding: other bounds on non-integer numbers, $ref (an error), uniqueItems, format. `validate`
checks the same subset plus minimum/maximum; tools use it for arguments that did not come through the
decoder (e.g. an API client's own call).
"""
from __future__ import annotations

import json
import math

from zerollm.errors import ZeroLLMError

from .regex_grammar import (
    DIGIT,
    EMPTY,
    MAX_DEPTH,
    MAX_STATES,
    CharSet,
    GrammarTooLarge,
    alt,
    check_size,
    lit,
    opt,
    regex_ast,
    rep,
    seq,
)


class SchemaError(ZeroLLMError):
    """A JSON Schema (or a value checked against one) is not what the caller needs."""



def _json_string_ast(min_len: int = 0, max_len: int | None = None, pattern: str | None = None):
    if pattern is not None:
        return seq(lit('"'), regex_ast(pattern.removeprefix("^").removesuffix("$")), lit('"'))
    plain = ("chars", CharSet('"\\', [("\0", "\x1f")], negated=True))
    escape = seq(lit("\\"), alt(("chars", CharSet('"\\/bfnrt')),
                                seq(lit("u"), rep(("chars", CharSet(ranges=[("0", "9"), ("a", "f"), ("A", "F")])), 4, 4))))
    return seq(lit('"'), rep(alt(plain, escape), min_len, max_len), lit('"'))


# JSON numbers: an optional minus, then 0 or a digit string without a leading zero, optional fraction/exponent
_UINT = alt(lit("0"), seq(("chars", CharSet(ranges=[("1", "9")])), rep(("chars", DIGIT))))
_UNUMBER = seq(_UINT, opt(seq(lit("."), rep(("chars", DIGIT), 1))),
               opt(seq(("chars", CharSet("eE")), opt(("chars", CharSet("+-"))), rep(("chars", DIGIT), 1))))
_INT, _NUMBER = seq(opt(lit("-")), _UINT), seq(opt(lit("-")), _UNUMBER)



def _digits(lo: str, hi: str):
    """Digit strings of one length n from `lo` to `hi` (both n digits, lo <= hi), as an exact grammar."""
    if len(lo) == 1:
        return ("chars", CharSet(ranges=[(lo, hi)]))
    if lo[0] == hi[0]:
        return seq(lit(lo[0]), _digits(lo[1:], hi[1:]))
    k = len(lo) - 1  # lo[0] < hi[0]: lo[0] then ≥ lo's tail | a middle first digit, anything | hi[0] then ≤ hi's tail
    parts = [seq(lit(lo[0]), _digits(lo[1:], "9" * k))]
    if ord(hi[0]) - ord(lo[0]) > 1:
        parts.append(seq(("chars", CharSet(ranges=[(chr(ord(lo[0]) + 1), chr(ord(hi[0]) - 1))])),
                         rep(("chars", DIGIT), k, k)))
    parts.append(seq(lit(hi[0]), _digits("0" * k, hi[1:])))
    return alt(*parts)


def _uint_range(a: int, b: int | None):
    """Non-negative integers a..b (b None = unbounded) written without leading zeros."""
    if b is None:
        n = len(str(a))
        longer = seq(("chars", CharSet(ranges=[("1", "9")])), rep(("chars", DIGIT), n, None))
        return alt(_uint_range(a, 10 ** n - 1), longer)
    parts = []
    for n in range(len(str(a)), len(str(b)) + 1):
        lo, hi = max(a, 10 ** (n - 1) if n > 1 else 0), min(b, 10 ** n - 1)
        if lo <= hi:
            parts.append(_digits(str(lo), str(hi)))
    return alt(*parts)


def _int_range(lo, hi):
    """Integers in [lo, hi] (either may be None = unbounded) as an exact grammar."""
    if lo is not None and hi is not None and lo > hi:
        raise SchemaError(f"integer schema with minimum {lo} > maximum {hi}")
    parts = []
    if hi is None or hi >= 0:  # the non-negative part
        parts.append(_uint_range(max(lo, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:  # the negative part: "-" and a magnitude in [max(1, -hi), -lo]
        parts.append(seq(lit("-"), _uint_range(max(1, -hi) if hi is not None else 1, -lo if lo is not None else None)))
    return alt(*parts)


def _bound(schema: dict, key: str, path: str, default):
    """A length/count bound: a non-negative integer, and max >= min."""
    v = schema.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise SchemaError(f"JSON schema at {path}: '{key}' must be a non-negative integer, got {v!r}")
    if key.startswith("max") and v is not None and v < schema.get("min" + key[3:], 0):
        raise SchemaError(f"JSON schema at {path}: '{key}' {v} is below '{'min' + key[3:]}'")
    return v


class JSONSchemaCompiler:
    """JSON Schema (the subset in the module docstring) -> AST. `ws` is the optional whitespace allowed
    after `:` and `,` (default: at most one space, so tokens like `": "` stay usable)."""

    def __init__(self, ws=None, any_depth: int = 2):
        self.ws = opt(lit(" ")) if ws is None else ws
        self.any_depth = any_depth
        self.memo: dict = {}  # nfa_size cache: each subtree's size is computed once

    def compile(self, schema: dict, depth: int | None = None, path: str = "$", level: int = 0):
        """The AST of `schema`. Every keyword that can multiply the grammar's size (minLength/maxLength,
        minItems/maxItems, enum, anyOf/oneOf, properties, nesting) is checked against the size budget as
        soon as its node exists, so an oversized schema fails naming that keyword before anything big is built."""
        depth = self.any_depth if depth is None else depth
        if level > MAX_DEPTH:
            raise GrammarTooLarge(f"JSON schema at {path[:40]}...: nested over {MAX_DEPTH} levels")
        if schema is True or schema == {}:
            return self._any(depth)
        if not isinstance(schema, dict):
            raise SchemaError(f"JSON schema at {path}: expected an object, got {schema!r}"[:200])
        if "const" in schema:
            return lit(json.dumps(schema["const"], ensure_ascii=False))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"JSON schema at {path}: 'enum' must be a non-empty list (no value can match)")
            texts = [json.dumps(v, ensure_ascii=False) for v in values]
            what = f"JSON schema at {path}: 'enum' ({len(values):,} values)"
            if sum(len(t) + 2 for t in texts) > MAX_STATES:  # its NFA size, known before building it
                raise GrammarTooLarge(f"{what} makes the constraint too large to compile (over {MAX_STATES:,} "
                                      f"automaton states)")
            return check_size(alt(*(lit(t) for t in texts)), what, self.memo)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                subs = schema[key]
                if not isinstance(subs, list) or not subs:
                    raise SchemaError(f"JSON schema at {path}: '{key}' must be a non-empty list (no value can match)")
                node = alt(*(self.compile(s, depth, f"{path}.{key}[{i}]", level + 1) for i, s in enumerate(subs)))
                return check_size(node, f"JSON schema at {path}: '{key}' ({len(subs)} alternatives)", self.memo)
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.compile(schema["allOf"][0], depth, f"{path}.allOf[0]", level + 1)
        if "$ref" in schema:
            raise SchemaError("JSON Schema $ref is not supported by constrained decoding")
        t = schema.get("type")
        if t is None:
            t = "object" if "properties" in schema else "array" if "items" in schema else None
        if t is None:
            return self._any(depth)
        if isinstance(t, list):
            if not t:
                raise SchemaError(f"JSON schema at {path}: 'type' is an empty list (no value can match)")
            return alt(*(self.compile({**schema, "type": x}, depth, path, level) for x in t))
        if t == "object":
            return check_size(self._object(schema, depth, path, level), f"JSON schema at {path}: 'properties'", self.memo)
        if t == "array":
            return self._array(schema, depth, path, level)
        if t == "string":
            lo, hi = _bound(schema, "minLength", path, 0), _bound(schema, "maxLength", path, None)
            node = _json_string_ast(lo, hi, schema.get("pattern"))
            what = f"'maxLength' {hi:,}" if hi is not None else f"'minLength' {lo:,}"
            return check_size(node, f"JSON schema at {path}: {what}", self.memo)
        if t == "integer":
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if schema.get("exclusiveMinimum") is not None:
                lo = math.floor(schema["exclusiveMinimum"]) + 1
            if schema.get("exclusiveMaximum") is not None:
                hi = math.ceil(schema["exclusiveMaximum"]) - 1
            if lo is None and hi is None:
                return _INT
            for name, v in (("minimum", lo), ("maximum", hi)):
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or abs(v) > 10 ** 30):
                    raise SchemaError(f"JSON schema at {path}: '{name}' must be a number within ±1e30, got {v!r}")
            return _int_range(None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi))
        if t == "number":
            return _UNUMBER if schema.get("minimum", -1) >= 0 else _NUMBER
        if t == "boolean":
            return alt(lit("true"), lit("false"))
        if t == "null":
            return lit("null")
        raise SchemaError(f"unsupported JSON Schema type {t!r}")

    def _object(self, schema: dict, depth: int, path: str = "$", level: int = 0):
        props = list((schema.get("properties") or {}).items())
        if not props:
            if schema.get("additionalProperties") is False:
                return lit("{}")
            return self._any_object(depth) if depth > 0 else lit("{}")
        required = set(schema.get("required", ()))
        items = [(seq(lit(json.dumps(name, ensure_ascii=False) + ":"), self.ws,
                      self.compile(sub, depth - 1, f"{path}.{name}", level + 1)), name in required)
                 for name, sub in props]
        sep = seq(lit(","), self.ws)

        # rest(i, emitted): properties i.. in order; a comma precedes each one after the first present.
        # rest(i, True) is linear in size; rest(i, False) nests, so the total is O(n^2) nodes.
        def rest(i: int, emitted: bool):
            if i == len(items):
                return EMPTY
            node, req = items[i]
            if emitted:
                part = seq(sep, node)
                return seq(part if req else opt(part), rest(i + 1, True))
            with_it = seq(node, rest(i + 1, True))
            return with_it if req else alt(with_it, rest(i + 1, False))

        return seq(lit("{"), rest(0, False), lit("}"))

    def _array(self, schema: dict, depth: int, path: str = "$", level: int = 0):
        item = self.compile(schema.get("items", {}), depth - 1, f"{path}[]", level + 1)
        lo, hi = _bound(schema, "minItems", path, 0), _bound(schema, "maxItems", path, None)
        if hi == 0:
            return lit("[]")
        more = rep(seq(lit(","), self.ws, item), max(lo - 1, 0), None if hi is None else max(hi - 1, 0))
        node = seq(lit("["), seq(item, more) if lo > 0 else opt(seq(item, more)), lit("]"))
        what = f"'maxItems' {hi:,}" if hi is not None else f"'minItems' {lo:,}"
        return check_size(node, f"JSON schema at {path}: {what}", self.memo)

    def _any(self, depth: int):
        scalars = [_json_string_ast(), _NUMBER, lit("true"), lit("false"), lit("null")]
        if depth > 0:
            scalars += [self._any_object(depth), self._array({"items": True}, depth)]
        return alt(*scalars)

    def _any_object(self, depth: int):
        member = seq(_json_string_ast(), lit(":"), self.ws, self._any(depth - 1))
        return seq(lit("{"), opt(seq(member, rep(seq(lit(","), self.ws, member)))), lit("}"))



# ---------------------------------------------------------------------------------------------------------
# validation

_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "null": lambda v: v is None,
}


def validate(value, schema: dict, path: str = "$") -> list[str]:
    """Errors (empty if valid) of `value` against the supported JSON Schema subset, each naming its path."""
    if schema is True or not isinstance(schema, dict):
        return []
    if "const" in schema and value != schema["const"]:
        return [f"{path}: must be {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: must be one of {schema['enum']!r}, got {value!r}"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [validate(value, s, path) for s in schema[key]]
            if all(branches):
                return [f"{path}: matches none of the {key} alternatives ({'; '.join(min(branches, key=len))})"]
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    if types and not any(_TYPE_CHECKS.get(t, lambda v: True)(value) for t in types):
        return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r}"]
    errs: list[str] = []
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
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", math.inf)
        if not lo <= len(value) <= hi:
            errs.append(f"{path}: has {len(value)} items, outside [{lo}, {hi}]")
        for i, v in enumerate(value):
            errs += validate(v, schema.get("items", {}), f"{path}[{i}]")
    elif isinstance(value, str):
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", math.inf)
        if not lo <= len(value) <= hi:
            errs.append(f"{path}: length {len(value)} outside [{lo}, {hi}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
        if not lo <= value <= hi:
            errs.append(f"{path}: {value} outside [{lo}, {hi}]")
    return errs


__all__ = ["JSONSchemaCompiler", "SchemaError", "validate"]
