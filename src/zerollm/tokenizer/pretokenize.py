"""Pre-tokenization: split text into chunks that BPE never merges across.

Byte-level BPE (GPT-2 onwards) first cuts text with a regular expression into "pre-tokens": words with
their leading space, runs of digits, runs of punctuation, runs of whitespace. Merges are learned and applied
inside each chunk only, so a token never spans "dog" and "." or a word and the following space. This keeps
the vocabulary from filling up with `dog.`, `dog!`, `dog?` variants and makes encoding parallel per chunk.

Two patterns are provided, in the exact form tiktoken uses (tiktoken runs them with Rust's `fancy-regex`;
we run them with Python's `regex` module in the trainer and the reference encoder, and the tests check
that both engines cut text the same way):

* `GPT2_PATTERN`: GPT-2 (Radford et al. 2019). Contractions, ` ?letters`, ` ?digits`, ` ?other`, whitespace.
  The original release spelled it
  ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``; tiktoken's form
  below is equivalent (possessive quantifiers only avoid backtracking) and faster.
* `GPT4_PATTERN`: the `cl100k_base` pattern (GPT-3.5/4): case-insensitive contractions, a letter run may
  carry one leading non-letter (e.g. `_name`, `"word`), numbers are split into groups of at most 3 digits,
  and newlines are kept apart from other whitespace. This is the default.

`\\s++$|\\s+(?!\\S)|\\s` makes a run of spaces before a word give its last space to the word
(" hello" stays one chunk) while trailing whitespace stays whole.
"""
from __future__ import annotations

import functools

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

DEFAULT_PATTERN = GPT4_PATTERN

# Short names accepted wherever a pattern is expected (CLI flags, configs).
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "cl100k": GPT4_PATTERN}


def resolve_pattern(pattern: str | None) -> str:
    """Return the regex for a short name ("gpt2", "gpt4"), or `pattern` itself if it is already a regex.
    Raises ValueError with the regex error if the pattern does not compile."""
    if pattern is None:
        return DEFAULT_PATTERN
    pattern = PATTERNS.get(pattern, pattern)
    try:
        compile_pattern(pattern)
    except regex.error as e:
        raise ValueError(f"invalid pre-tokenization pattern {pattern!r}: {e}") from None
    return pattern


@functools.lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def pretokenize(text: str, pattern: str = DEFAULT_PATTERN) -> list[str]:
    """Split `text` into pre-token chunks. ``"".join(pretokenize(t)) == t`` for the provided patterns."""
    return compile_pattern(pattern).findall(text)
