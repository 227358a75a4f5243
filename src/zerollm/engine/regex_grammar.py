"""Character-level grammar ASTs for constrained decoding, and the regex subset that compiles to them.

An AST node is one of

    ("chars", CharSet)          one character from the set
    ("seq", [nodes])            the nodes in order (("seq", []) = the empty string, EMPTY)
    ("alt", [nodes])            any one of the nodes
    ("rep", node, min, max)     node repeated min..max times (max None = unbounded)

built with `lit`, `seq`, `alt`, `rep`, `opt`. Both front ends produce these nodes — `regex_ast(pattern)` here
and the JSON Schema compiler (json_schema.py) — and constrained.py turns them into an automaton.

Regex syntax: literals, escapes (\\d \\w \\s \\D \\W \\S and escaped metacharacters), `.`, classes
`[...]`/`[^...]`, groups `(...)`, `(?:...)`, `|`, the quantifiers `* + ? {m} {m,} {m,n}` (lazy forms accepted:
same language), `^`/`$` only at the ends (the whole output must match: fullmatch).
"""
from __future__ import annotations

from typing import Sequence



class CharSet:
    """A set of characters: explicit chars and (lo, hi) ranges, optionally negated."""

    __slots__ = ("chars", "ranges", "negated")

    def __init__(self, chars: str = "", ranges: Sequence[tuple[str, str]] = (), negated: bool = False):
        self.chars, self.ranges, self.negated = frozenset(chars), tuple(ranges), negated

    def __contains__(self, c: str) -> bool:
        hit = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return hit != self.negated


def lit(text: str):
    return ("seq", [("chars", CharSet(c)) for c in text])


def seq(*nodes):
    return ("seq", list(nodes))


def alt(*nodes):
    return ("alt", list(nodes))


def rep(node, lo: int = 0, hi: int | None = None):
    return ("rep", node, lo, hi)


def opt(node):
    return rep(node, 0, 1)


EMPTY = ("seq", [])
DIGIT = CharSet(ranges=[("0", "9")])
WORD = CharSet("_", [("a", "z"), ("A", "Z"), ("0", "9")])
SPACE = CharSet(" \t\n\r\f\v")
ANY = CharSet("\n", negated=True)


# ---------------------------------------------------------------------------------------------------------
# regex -> AST


class _RegexParser:
    """Recursive-descent parser for the regex subset in the module docstring."""

    _ESC = {"d": DIGIT, "w": WORD, "s": SPACE}
    _CTRL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}

    def __init__(self, pattern: str):
        self.p, self.i = pattern, 0

    def parse(self):
        node = self._alt()
        if self.i != len(self.p):
            raise ValueError(f"regex {self.p!r}: unexpected {self.p[self.i]!r} at {self.i}")
        return node

    def _peek(self):
        return self.p[self.i] if self.i < len(self.p) else None

    def _alt(self):
        branches = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            branches.append(self._seq())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def _seq(self):
        items = []
        while self._peek() not in (None, "|", ")"):
            items.append(self._quantified(self._atom()))
        return ("seq", items)

    def _quantified(self, node):
        while True:
            c = self._peek()
            if c in ("*", "+", "?"):
                self.i += 1
                node = rep(node, *{"*": (0, None), "+": (1, None), "?": (0, 1)}[c])
            elif c == "{" and self._brace_ahead():
                end = self.p.index("}", self.i)
                lo, _, hi = self.p[self.i + 1:end].partition(",")
                has_comma = "," in self.p[self.i + 1:end]
                self.i = end + 1
                node = rep(node, int(lo or 0), (int(hi) if hi else None) if has_comma else int(lo))
            else:
                return node
            if self._peek() == "?":  # lazy quantifier: same language
                self.i += 1

    def _brace_ahead(self) -> bool:
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        return bool(body) and all(ch.isdigit() or ch == "," for ch in body) and body.count(",") <= 1

    def _atom(self):
        c = self._peek()
        if c is None:
            raise ValueError(f"regex {self.p!r}: unexpected end")
        self.i += 1
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self._peek() == "?":
                raise ValueError(f"regex {self.p!r}: only (...) and (?:...) groups are supported")
            node = self._alt()
            if self._peek() != ")":
                raise ValueError(f"regex {self.p!r}: missing ')'")
            self.i += 1
            return node
        if c == "[":
            return ("chars", self._class())
        if c == ".":
            return ("chars", ANY)
        if c == "\\":
            return ("chars", self._escape())
        if c in "^$":
            if c == "^" and self.i == 1 or c == "$" and self.i == len(self.p):
                return EMPTY  # anchors at the ends are implied (fullmatch)
            raise ValueError(f"regex {self.p!r}: anchors are only supported at the ends")
        if c in "*+?)":
            raise ValueError(f"regex {self.p!r}: nothing to repeat at {self.i - 1}")
        return ("chars", CharSet(c))

    def _escape(self) -> CharSet:
        c = self.p[self.i]
        self.i += 1
        if c.lower() in self._ESC:
            base = self._ESC[c.lower()]
            return base if c.islower() else CharSet(base.chars, base.ranges, not base.negated)
        return CharSet(self._CTRL.get(c, c))

    def _class(self) -> CharSet:
        negated = self._peek() == "^"
        self.i += negated
        chars, ranges, first = [], [], True
        while True:
            c = self._peek()
            if c is None:
                raise ValueError(f"regex {self.p!r}: missing ']'")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == "\\":
                e = self.p[self.i]
                if e.lower() in self._ESC:
                    self.i += 1
                    sub = self._ESC[e.lower()]
                    if e.isupper():
                        raise ValueError(f"regex {self.p!r}: \\{e} inside [...] is not supported")
                    chars.extend(sub.chars)
                    ranges.extend(sub.ranges)
                    continue
                self.i += 1
                c = self._CTRL.get(e, e)
            if self._peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                hi = self.p[self.i + 1]
                self.i += 2
                if hi == "\\":
                    hi = self._CTRL.get(self.p[self.i], self.p[self.i])
                    self.i += 1
                ranges.append((c, hi))
            else:
                chars.append(c)
        return CharSet("".join(chars), ranges, negated)


def regex_ast(pattern: str):
    return _RegexParser(pattern).parse()


__all__ = ["CharSet", "lit", "seq", "alt", "rep", "opt", "EMPTY", "DIGIT", "WORD", "SPACE", "ANY", "regex_ast"]
