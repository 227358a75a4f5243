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

Size budget: a grammar compiles to a Thompson NFA whose size is the AST with every bounded repetition
unrolled (`x{m,n}` is n copies of x), so `a{1000000}` or a JSON string with minLength 10**9 would take
gigabytes. `nfa_size(node)` computes that size from the AST alone (product of the repetition bounds, no
unrolling) and `check_size` rejects a grammar over MAX_STATES before anything is built, naming the culprit.
"""
from __future__ import annotations

from typing import Sequence

from zerollm.errors import ZeroLLMError

MAX_STATES = 100_000  # NFA states one constraint may compile to (~50 MB, under a second to build)
MAX_DEPTH = 64  # nesting of groups / schemas; deeper ones are rejected before recursing
MAX_PATTERN = 10_000  # characters in one regex


class GrammarTooLarge(ZeroLLMError):
    """A regex or JSON Schema whose automaton would be over the size budget (the message names why)."""



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


def nfa_size(node, memo: dict | None = None) -> int:
    """States of the Thompson NFA for `node` (constrained._NFA builds exactly this many, plus one), computed
    without unrolling: rep(x, lo, hi) costs (lo + max(hi - lo, 1)) * size(x) + 2. `memo` (id -> (node, size))
    lets a caller that checks nested subtrees pay for each node once."""
    if memo is not None and id(node) in memo:
        return memo[id(node)][1]
    kind = node[0]
    if kind == "chars":
        n = 1
    elif kind == "seq":
        n = sum(nfa_size(c, memo) for c in node[1])
    elif kind == "alt":
        n = 1 + sum(1 + nfa_size(c, memo) for c in node[1])
    else:
        _, child, lo, hi = node
        n = (lo + max((hi if hi is not None else lo) - lo, 1)) * nfa_size(child, memo) + 2
    if memo is not None:
        memo[id(node)] = (node, n)
    return n


def check_size(node, what: str, memo: dict | None = None, limit: int | None = None):
    """`node` if its NFA fits the budget; else GrammarTooLarge naming `what` (the keyword or quantifier)."""
    limit = MAX_STATES if limit is None else limit
    n = nfa_size(node, memo)
    if n > limit:
        raise GrammarTooLarge(f"{what} makes the constraint too large to compile: ~{n:,} automaton states, "
                              f"over the limit of {limit:,} (use smaller length/count bounds or fewer alternatives)")
    return node
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
        if len(pattern) > MAX_PATTERN:
            raise GrammarTooLarge(f"regex of {len(pattern):,} characters is over the limit of {MAX_PATTERN:,}")
        self.p, self.i, self.depth, self.memo = pattern, 0, 0, {}

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
                text = self.p[self.i:end + 1]
                self.i = end + 1
                lo, hi = int(lo or 0), (int(hi) if hi else None) if has_comma else int(lo)
                if hi is not None and hi < lo:
                    raise ValueError(f"regex {self.p!r}: {text} has max < min")
                node = check_size(rep(node, lo, hi), f"regex quantifier {text}", self.memo)
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
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise GrammarTooLarge(f"regex {self.p[:40]!r}...: groups nested over {MAX_DEPTH} deep")
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self._peek() == "?":
                raise ValueError(f"regex {self.p!r}: only (...) and (?:...) groups are supported")
            node = self._alt()
            if self._peek() != ")":
                raise ValueError(f"regex {self.p!r}: missing ')'")
            self.i += 1
            self.depth -= 1
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
    parser = _RegexParser(pattern)
    return check_size(parser.parse(), f"regex {pattern[:40]!r}", parser.memo)


__all__ = ["GrammarTooLarge", "MAX_STATES", "MAX_DEPTH", "nfa_size", "check_size", "CharSet", "lit", "seq", "alt", "rep", "opt", "EMPTY", "DIGIT", "WORD", "SPACE", "ANY", "regex_ast"]
