"""Constrained decoding: force the output to match a regex or a JSON Schema by masking tokens at each step.

The approach is Outlines' (Willard & Louf 2023, "Efficient Guided Generation for Large Language Models"):
compile the constraint to a finite automaton over characters, then at each step allow exactly the tokens
whose characters keep the automaton alive.

    JSON Schema ──json_schema.py───┐
                                   ├─▶ AST ──_NFA (Thompson 1968)──▶ lazy DFA (subset construction, cached)
    regex ──────regex_grammar.py───┘                                  │
                                                                      ▼
    vocabulary trie (token strings, shared prefixes) ── walked from a DFA state ──▶ per-state token table

For every DFA state we cache, per token, the *distance to acceptance* after consuming the token (the
fewest characters still needed to reach a complete match; inf = token not allowed). A step's mask is then
one comparison: `dist_after <= remaining_tokens - 1`. Because every byte-level vocabulary has
single-character tokens, a completion of d characters needs at most d tokens, so the output is always
complete — valid JSON / a full regex match — within `max_new_tokens`, whatever the model's weights (a
random tiny model included). The stop token (eos) is allowed only in accepting states; in an accepting
state from which no token can continue, generation ends by itself.

API:

    c = JSONSchemaConstraint(schema, tokenizer)        # or RegexConstraint(r"\\d{3}-[a-z]+", tokenizer)
    st = c.begin()                                      # a per-sequence ConstraintState
    mask = st.mask(remaining=50, n_logits=V)            # (V,) bool, True = allowed
    st.advance(token_id); st.accepting; st.done; st.text
    c.allowed_mask("text so far")                       # stateless convenience
    Engine(model, tokenizer).submit(Request(prompt_ids, GenerationConfig(...), constraint=c))   # engine.py

Grammars live in their own modules: regex_grammar.py (the AST node shapes, the regex subset and the size
budget: a grammar over MAX_STATES automaton states is refused before it is built, naming the keyword or
quantifier) and json_schema.py (the JSON Schema subset, its limits, and `validate`). Non-ASCII text is produced only by
tokens that hold whole UTF-8 characters (a token that is a partial character is never allowed).
"""
from __future__ import annotations

import json
import math
import time
from collections import deque

import torch

from .json_schema import JSONSchemaCompiler, SchemaError, validate
from .regex_grammar import EMPTY, MAX_STATES, CharSet, GrammarTooLarge, nfa_size, regex_ast

INF = math.inf

# ---------------------------------------------------------------------------------------------------------
# AST -> NFA -> lazy DFA


class _NFA:
    """Thompson NFA: state s has eps[s] (targets) and edges[s] = [(CharSet, target)]; one accept state.
    Building stops with GrammarTooLarge past `max_states` or `deadline` (time.monotonic()), whatever the AST."""

    def __init__(self, ast, max_states: int = MAX_STATES, deadline: float | None = None):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[CharSet, int]]] = []
        self.max_states, self.deadline = max_states, deadline
        self.start = self._new()
        self.accept = self._build(ast, self.start)
        self.dist = self._distances()

    def _new(self) -> int:
        n = len(self.eps)
        if n > self.max_states:
            raise GrammarTooLarge(f"constraint automaton over {self.max_states:,} states")
        if self.deadline is not None and n % 4096 == 0 and time.monotonic() > self.deadline:
            raise GrammarTooLarge("constraint took too long to compile")
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def _build(self, node, s: int) -> int:
        kind = node[0]
        if kind == "chars":
            t = self._new()
            self.edges[s].append((node[1], t))
            return t
        if kind == "seq":
            for child in node[1]:
                s = self._build(child, s)
            return s
        if kind == "alt":
            end = self._new()
            for child in node[1]:
                b = self._new()
                self.eps[s].append(b)
                self.eps[self._build(child, b)].append(end)
            return end
        _, child, lo, hi = node
        for _ in range(lo):
            s = self._build(child, s)
        if hi is None:  # star: s -eps-> loop -child-> back to loop; loop -eps-> end
            loop, end = self._new(), self._new()
            self.eps[s].append(loop)
            self.eps[self._build(child, loop)].append(loop)
            self.eps[loop].append(end)
            return end
        end = self._new()
        for _ in range(hi - lo):  # each optional copy may be skipped to the end
            self.eps[s].append(end)
            s = self._build(child, s)
        self.eps[s].append(end)
        return end

    def _distances(self) -> list[float]:
        """Fewest characters from each state to the accept state (0-1 BFS on reversed edges)."""
        rev: list[list[tuple[int, int]]] = [[] for _ in self.eps]
        for s, targets in enumerate(self.eps):
            for t in targets:
                rev[t].append((s, 0))
        for s, edges in enumerate(self.edges):
            for _, t in edges:
                rev[t].append((s, 1))
        dist = [INF] * len(self.eps)
        dist[self.accept] = 0
        dq = deque([self.accept])
        while dq:
            t = dq.popleft()
            for s, w in rev[t]:
                if dist[t] + w < dist[s]:
                    dist[s] = dist[t] + w
                    dq.appendleft(s) if w == 0 else dq.append(s)
        return dist

    def closure(self, states) -> frozenset[int]:
        out, stack = set(states), list(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in out:
                    out.add(t)
                    stack.append(t)
        return frozenset(s for s in out if self.dist[s] < INF)  # drop states that can never accept


class _Trie:
    __slots__ = ("children", "ids")

    def __init__(self):
        self.children: dict[str, _Trie] = {}
        self.ids: list[int] = []


class Constraint:
    """A compiled constraint over a tokenizer's vocabulary (shared by any number of sequences)."""

    def __init__(self, ast, tokenizer, eos_id: int | None = None, vocab_size: int | None = None,
                 timeout: float | None = None):
        self.nfa = _NFA(ast, deadline=None if timeout is None else time.monotonic() + timeout)
        self.tokenizer = tokenizer
        self.eos_id = getattr(tokenizer, "eos_id", None) if eos_id is None else eos_id
        self.vocab_size = vocab_size or tokenizer.vocab_size
        self._sets: list[frozenset[int]] = []
        self._ids: dict[frozenset[int], int] = {}
        self._trans: list[dict[str, int]] = []
        self.dist: list[float] = []
        self.accepting: list[bool] = []
        self._tables: dict[int, torch.Tensor] = {}
        self.start = self._state(self.nfa.closure([self.nfa.start]))
        self.trie = self._build_trie(tokenizer)

    # --- DFA ---------------------------------------------------------------------------------------------
    def _state(self, nfa_states: frozenset[int]) -> int:
        sid = self._ids.get(nfa_states)
        if sid is None:
            sid = self._ids[nfa_states] = len(self._sets)
            self._sets.append(nfa_states)
            self._trans.append({})
            self.dist.append(min((self.nfa.dist[s] for s in nfa_states), default=INF))
            self.accepting.append(self.nfa.accept in nfa_states)
        return sid

    def step(self, state: int, ch: str) -> int:
        """DFA transition on one character (-1 = dead)."""
        nxt = self._trans[state].get(ch)
        if nxt is None:
            targets = [t for s in self._sets[state] for cs, t in self.nfa.edges[s] if ch in cs]
            closure = self.nfa.closure(targets)
            nxt = self._state(closure) if closure else -1
            self._trans[state][ch] = nxt
        return nxt

    def walk(self, state: int, text: str) -> int:
        for ch in text:
            if state < 0:
                return -1
            state = self.step(state, ch)
        return state

    # --- vocabulary --------------------------------------------------------------------------------------
    def _build_trie(self, tokenizer) -> _Trie:
        root = _Trie()
        special = set(getattr(tokenizer, "special_tokens", {}).values())
        for tid in range(self.vocab_size):
            if tid in special or tid == self.eos_id:
                continue
            try:
                text = tokenizer.token_bytes(tid).decode("utf-8")
            except (UnicodeDecodeError, KeyError, IndexError, ValueError):
                continue  # partial UTF-8 or unused id
            if not text:
                continue
            node = root
            for ch in text:
                node = node.children.setdefault(ch, _Trie())
            node.ids.append(tid)
        return root

    def table(self, state: int) -> torch.Tensor:
        """(vocab_size,) float: distance to acceptance after each token from `state` (inf = not allowed).
        The eos entry is 0 in accepting states. Cached per DFA state."""
        tab = self._tables.get(state)
        if tab is not None:
            return tab
        ids, dists = [], []
        stack = [(self.trie, state)]
        while stack:
            node, s = stack.pop()
            for ch, child in node.children.items():
                ns = self.step(s, ch)
                if ns < 0:
                    continue
                if child.ids:
                    ids.extend(child.ids)
                    dists.extend([self.dist[ns]] * len(child.ids))
                if child.children:
                    stack.append((child, ns))
        tab = torch.full((self.vocab_size,), INF)
        if ids:
            tab[torch.tensor(ids)] = torch.tensor(dists, dtype=torch.float32)
        if self.accepting[state] and self.eos_id is not None and self.eos_id < self.vocab_size:
            tab[self.eos_id] = 0.0
        self._tables[state] = tab
        return tab

    def nbytes(self) -> int:
        """Rough memory held now (NFA ~200 B/state, cached DFA states and token tables): what a cache of
        compiled constraints counts, since the tables grow as sequences decode under it."""
        nfa = 200 * len(self.nfa.eps)
        dfa = sum(64 + 8 * len(st) + 100 * len(tr) for st, tr in zip(self._sets, self._trans))
        return nfa + dfa + sum(t.numel() * t.element_size() for t in self._tables.values()) + 64 * self.vocab_size

    # --- conveniences ------------------------------------------------------------------------------------
    def begin(self) -> "ConstraintState":
        return ConstraintState(self)

    def allowed_mask(self, text: str = "", remaining: int | None = None, n_logits: int | None = None) -> torch.Tensor:
        """Allowed next tokens after `text` (bool, True = allowed); all False if text cannot be extended."""
        st = self.begin()
        st.feed_text(text)
        return st.mask(remaining, n_logits)


class ConstraintState:
    """One sequence's position in a constraint: `mask()` for the next step, `advance(token)` after it."""

    def __init__(self, constraint: Constraint):
        self.c, self.state, self.text = constraint, constraint.start, ""

    def mask(self, remaining: int | None = None, n_logits: int | None = None) -> torch.Tensor:
        """(n_logits,) bool. With `remaining` (tokens left, this one included) only tokens after which
        the output can still be completed within the budget are allowed (falls back to the plain mask if
        nothing fits, which only happens with a budget smaller than the shortest match)."""
        n = n_logits or self.c.vocab_size
        if self.state < 0:
            return torch.zeros(n, dtype=torch.bool)
        tab = self.c.table(self.state)
        ok = tab <= (remaining - 1) if remaining is not None else tab < INF
        if remaining is not None and not ok.any():
            ok = tab < INF
        if n > ok.numel():
            ok = torch.cat([ok, torch.zeros(n - ok.numel(), dtype=torch.bool)])
        return ok[:n]

    def advance(self, token_id: int) -> None:
        if token_id == self.c.eos_id:
            return
        piece = self.c.tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")
        self.feed_text(piece)

    def feed_text(self, text: str) -> None:
        self.state = self.c.walk(self.state, text) if self.state >= 0 else -1
        self.text += text

    @property
    def accepting(self) -> bool:
        return self.state >= 0 and self.c.accepting[self.state]

    @property
    def done(self) -> bool:
        """Accepting and no token can extend the output: generation should stop here."""
        if self.state < 0:
            return True
        if not self.accepting:
            return False
        tab = self.c.table(self.state).clone()
        if self.c.eos_id is not None and self.c.eos_id < tab.numel():
            tab[self.c.eos_id] = INF
        return not bool((tab < INF).any())


class RegexConstraint(Constraint):
    """Output must fullmatch `pattern` (the regex subset in the module docstring)."""

    def __init__(self, pattern: str, tokenizer, **kw):
        self.pattern = pattern
        super().__init__(regex_ast(pattern), tokenizer, **kw)


class JSONSchemaConstraint(Constraint):
    """Output must be JSON that validates against `schema` (the subset in the module docstring)."""

    def __init__(self, schema: dict | str, tokenizer, whitespace: bool = True, **kw):
        self.schema = json.loads(schema) if isinstance(schema, str) else schema
        compiler = JSONSchemaCompiler(ws=None if whitespace else EMPTY)
        super().__init__(compiler.compile(self.schema), tokenizer, **kw)


def apply_mask(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits (..., V) with disallowed entries set to -inf (mask on logits' device)."""
    return logits.masked_fill(~mask.to(logits.device), float("-inf"))


__all__ = ["GrammarTooLarge", "nfa_size", "Constraint", "ConstraintState", "RegexConstraint", "JSONSchemaConstraint", "apply_mask",
           "regex_ast", "JSONSchemaCompiler", "SchemaError", "validate"]
