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

from .regex_grammar import DIGIT, EMPTY, CharSet, alt, lit, opt, regex_ast, rep, seq


class SchemaError(ValueError):
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


class JSONSchemaCompiler:
    """JSON Schema (the subset in the module docstring) -> AST. `ws` is the optional whitespace allowed
    after `:` and `,` (default: at most one space, so tokens like `": "` stay usable)."""

    def __init__(self, ws=None, any_depth: int = 2):
        self.ws = opt(lit(" ")) if ws is None else ws
        self.any_depth = any_depth

    def compile(self, schema: dict, depth: int | None = None):
        depth = self.any_depth if depth is None else depth
        if schema is True or schema == {}:
            return self._any(depth)
        if "const" in schema:
            return lit(json.dumps(schema["const"], ensure_ascii=False))
        if "enum" in schema:
            return alt(*(lit(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return alt(*(self.compile(s, depth) for s in schema[key]))
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.compile(schema["allOf"][0], depth)
        if "$ref" in schema:
            raise SchemaError("JSON Schema $ref is not supported by constrained decoding")
        t = schema.get("type")
        if t is None:
            t = "object" if "properties" in schema else "array" if "items" in schema else None
        if t is None:
            return self._any(depth)
        if isinstance(t, list):
            return alt(*(self.compile({**schema, "type": x}, depth) for x in t))
        if t == "object":
            return self._object(schema, depth)
        if t == "array":
            return self._array(schema, depth)
        if t == "string":
            return _json_string_ast(schema.get("minLength", 0), schema.get("maxLength"), schema.get("pattern"))
        if t == "integer":
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if schema.get("exclusiveMinimum") is not None:
                lo = math.floor(schema["exclusiveMinimum"]) + 1
            if schema.get("exclusiveMaximum") is not None:
                hi = math.ceil(schema["exclusiveMaximum"]) - 1
            if lo is None and hi is None:
                return _INT
            return _int_range(None if lo is None else math.ceil(lo), None if hi is None else math.floor(hi))
        if t == "number":
            return _UNUMBER if schema.get("minimum", -1) >= 0 else _NUMBER
        if t == "boolean":
            return alt(lit("true"), lit("false"))
        if t == "null":
            return lit("null")
        raise SchemaError(f"unsupported JSON Schema type {t!r}")

    def _object(self, schema: dict, depth: int):
        props = list((schema.get("properties") or {}).items())
        if not props:
            if schema.get("additionalProperties") is False:
                return lit("{}")
            return self._any_object(depth) if depth > 0 else lit("{}")
        required = set(schema.get("required", ()))
        items = [(seq(lit(json.dumps(name, ensure_ascii=False) + ":"), self.ws, self.compile(sub, depth - 1)), name in required)
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

    def _array(self, schema: dict, depth: int):
        item = self.compile(schema.get("items", {}), depth - 1)
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        more = rep(seq(lit(","), self.ws, item), max(lo - 1, 0), None if hi is None else max(hi - 1, 0))
        body = seq(item, more)
        if hi == 0:
            return lit("[]")
        return seq(lit("["), body if lo > 0 else opt(body), lit("]"))

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
