"""Document loaders for RAG: .txt, .md, .html/.htm and .jsonl files (or directories of them).

Every loader yields `Document(text, source, title, meta)`. HTML is reduced to text with the standard
library's `html.parser`: <script>/<style> dropped, headings kept as Markdown `#` lines so the chunker still
sees the document's structure. JSONL records take their text from the "text" field (or "content"), their
title from "title" and every other scalar field becomes metadata.

Problems are reported clearly: an unreadable or non-UTF-8 file raises `RAGError` naming the file, a bad
JSONL line names file:line, and empty documents are skipped with a warning (`load_documents` raises if
nothing at all is left).
"""
from __future__ import annotations

import html
import json
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Iterator

from . import RAGError

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")


@dataclass
class Document:
    text: str
    source: str  # file path (and ":line" for JSONL records)
    title: str = ""
    meta: dict = field(default_factory=dict)


class _HTMLText(HTMLParser):
    """Collect visible text; headings become '# ...' lines, block elements become line breaks."""
    BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol"}
    SKIP = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "title":
            self._in_title = True
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self._in_title = False
        elif (len(tag) == 2 and tag[0] == "h" and tag[1].isdigit()) or tag == "p":
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self.skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = [" ".join(line.split()) for line in "".join(self.parts).split("\n")]
        out = "\n".join(lines)
        while "\n\n\n" in out:
            out = out.replace("\n\n\n", "\n\n")
        return out.strip()


def html_to_text(raw: str) -> tuple[str, str]:
    """(text, title) of an HTML page."""
    p = _HTMLText()
    p.feed(raw)
    p.close()
    return p.text(), html.unescape(p.title.strip())


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RAGError(f"{path}: cannot read file ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RAGError(f"{path}: not UTF-8 text (byte {e.start}); convert it to UTF-8 first") from None


def load_file(path: str | Path) -> Iterator[Document]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise RAGError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}")
    text = _read(path)
    if suffix in (".html", ".htm"):
        body, title = html_to_text(text)
        yield Document(body, str(path), title or path.stem)
    elif suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise RAGError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise RAGError(f"{path}:{n}: expected a JSON object with a \"text\" field")
            body = rec.get("text", rec.get("content"))
            if not isinstance(body, str):
                raise RAGError(f"{path}:{n}: no string \"text\" (or \"content\") field")
            meta = {k: v for k, v in rec.items() if k not in ("text", "content", "title")
                    and isinstance(v, (str, int, float, bool))}
            yield Document(body, f"{path}:{n}", str(rec.get("title", "")), meta)
    else:
        title = ""
        for line in text.splitlines():  # a leading Markdown heading names the document
            if line.strip():
                title = line.lstrip("#").strip() if line.startswith("#") else ""
                break
        yield Document(text, str(path), title or path.stem)


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise RAGError(f"{p}: no such file or directory")
    return files


def load_documents(paths: str | Path | Iterable[str | Path]) -> list[Document]:
    """All documents in the given files/directories; empty ones are skipped with a warning."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs, empty = [], []
    for f in _expand(paths):
        for doc in load_file(f):
            (docs if doc.text.strip() else empty).append(doc)
    if empty:
        warnings.warn(f"skipped {len(empty)} empty document(s): {', '.join(d.source for d in empty[:5])}"
                      + (" ..." if len(empty) > 5 else ""), stacklevel=2)
    if not docs:
        raise RAGError("no non-empty documents found in " + ", ".join(str(p) for p in paths))
    return docs
