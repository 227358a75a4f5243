"""Structure-aware chunking with overlap and Japanese sentence boundaries.

A document is cut at its structure first and at sizes second:

    text ──Markdown headings──▶ sections (a chunk never spans two sections; it records its heading path)
         ──blank lines──▶ paragraphs, packed greedily into chunks of at most `max_chars` characters
         ──sentences (。！？ and .!? + space)──▶ only for a paragraph too long for one chunk
         ──hard cut──▶ only for a single sentence too long for one chunk

Consecutive chunks of one section share `overlap` characters' worth of whole trailing sentences, so a fact
cut at a chunk boundary is still whole in one of the two chunks. Sizes are in characters, not tokens: the
chunker needs no model, and for Japanese one character is close to one token of a typical tokenizer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# A sentence ends at 。！？!? (plus closing brackets/quotes that follow), at . followed by whitespace, or at
# a line break. Full stops inside numbers ("3.14") and abbreviations without a following space do not end.
_SENT_END = re.compile(r"[。！？!?．]+[」』）)\"'’”]*|\.(?=\s)[\"'’”)]*|\n+")
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass
class Chunk:
    text: str
    source: str = ""
    title: str = ""
    heading: str = ""  # "Intro > Install" path of the Markdown headings above the chunk
    position: int = 0  # index of the chunk within its document
    meta: dict = field(default_factory=dict)


def split_sentences(text: str) -> list[str]:
    """Split into sentences, keeping each sentence's terminator; whitespace-only pieces are dropped."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        piece = text[start:m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _join(a: str, b: str) -> str:
    """Join two pieces with a space only between Latin text (Japanese is written without spaces)."""
    if not a:
        return b
    if a[-1].isascii() and b[:1].isascii():
        return a + " " + b
    return a + b


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """[(heading path, [paragraph, ...])] in document order; code fences are kept as one paragraph."""
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []
    paras: list[str] = []
    buf: list[str] = []
    in_fence = False

    def end_para():
        if buf and "".join(buf).strip():
            paras.append("\n".join(buf).strip())
        buf.clear()

    def end_section():
        end_para()
        if paras:
            sections.append((" > ".join(t for _, t in path), list(paras)))
        paras.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            buf.append(line)
            if not in_fence:
                end_para()
            continue
        if in_fence:
            buf.append(line)
            continue
        m = _HEADING.match(line)
        if m:
            end_section()
            level = len(m.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, m.group(2))]
        elif not line.strip():
            end_para()
        else:
            buf.append(line.strip())
    end_section()
    return sections


def _pieces(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph as units no longer than max_chars: itself, its sentences, or hard cuts of a sentence."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    units = []
    for s in split_sentences(paragraph):
        units += [s[i:i + max_chars] for i in range(0, len(s), max_chars)]
    return units


def chunk_text(text: str, max_chars: int = 500, overlap: int = 100) -> list[tuple[str, str]]:
    """[(heading path, chunk text)] for one document."""
    if max_chars <= 0 or overlap < 0 or overlap >= max_chars:
        raise ValueError(f"need max_chars > overlap >= 0, got max_chars={max_chars} overlap={overlap}")
    out: list[tuple[str, str]] = []
    for heading, paras in _sections(text):
        cur: list[tuple[str, str]] = []  # (separator before, unit) of the chunk being built
        for para in paras:
            for i, unit in enumerate(_pieces(para, max_chars)):
                sep = "\n\n" if i == 0 else ""  # paragraphs stay separated by a blank line
                if cur and len(_render(cur + [(sep, unit)])) > max_chars:
                    out.append((heading, _render(cur)))
                    cur = _tail(cur, overlap)
                    while cur and len(_render(cur + [("", unit)])) > max_chars:
                        cur.pop(0)
                    sep = ""
                cur.append((sep, unit))
        if cur:
            out.append((heading, _render(cur)))
    return out


def _render(units: list[tuple[str, str]]) -> str:
    text = ""
    for sep, unit in units:
        text = text + sep + unit if (sep and text) else _join(text, unit)
    return text


def _tail(units: list[tuple[str, str]], overlap: int) -> list[tuple[str, str]]:
    """The trailing whole units of a finished chunk that fit in `overlap` characters, to start the next."""
    kept: list[tuple[str, str]] = []
    for sep, unit in reversed(units):
        if len(_render([("", unit)] + kept)) > overlap:
            break
        kept.insert(0, ("", unit))
    return kept


def chunk_document(doc, max_chars: int = 500, overlap: int = 100) -> list[Chunk]:
    """Chunks of a `loaders.Document` (or anything with .text/.source/.title/.meta)."""
    return [Chunk(text, doc.source, doc.title, heading, i, dict(doc.meta))
            for i, (heading, text) in enumerate(chunk_text(doc.text, max_chars, overlap))]
