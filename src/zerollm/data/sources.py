"""Readers that turn text files, JSONL, JSON, Parquet, directories and globs into documents.

    inputs (paths, dirs, globs) ──resolve_inputs──▶ sorted files ──iter_documents──▶ Document(text, source, line)

Formats (`.gz` is accepted after .txt/.md/.jsonl/.json):
  .txt / .md  one document per file (`txt_mode="file"`), per non-empty line ("line"), or per block of
              lines separated by blank lines ("paragraph")
  .jsonl      one JSON object per line; the document is `record[text_field]`
  .json       a list of such objects, or a single object
  .parquet    the `text_field` column, read one row group at a time (memory stays bounded)
  directory   every supported file below it, recursively, in sorted order (others skipped, hidden skipped)
  glob        `data/*.jsonl`, `data/**/*.txt`: matches in sorted order

Errors are two kinds. A bad *record* (invalid JSON, missing field, non-string value, null) is
reported as a `DataWarning` with `file:line`, counted in `SourceStats`, and skipped; invalid UTF-8 is
decoded with U+FFFD replacement and counted as repaired. A bad *input* (a path that does not exist,
an unsupported file type, a glob matching nothing, or an input that yields no usable record at all)
raises one `DataError` that names the files, so a wrong `text_field` fails at once and clearly.
"""
from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from zerollm.errors import ZeroLLMError

TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".parquet")
TXT_MODES = ("file", "line", "paragraph")
MAX_WARNINGS_PER_FILE = 10          # after this many, one summary line per file


class DataError(ZeroLLMError):
    """An input that cannot be used at all (missing, unsupported, or with no usable record)."""


class DataWarning(UserWarning):
    """A single malformed or repaired record; the run goes on."""


@dataclass(frozen=True)
class Document:
    text: str
    source: str         # the file it came from
    line: int           # 1-based line (txt/jsonl), record index (json) or row (parquet)


@dataclass
class FileStats:
    path: str
    bytes: int
    documents: int = 0
    malformed: int = 0
    repaired: int = 0
    empty: int = 0                  # records whose text is "" (skipped, not malformed)
    problems: Counter = field(default_factory=Counter)   # reason -> count, for error messages
    keys_seen: set = field(default_factory=set)           # record keys, to suggest a text_field


@dataclass
class SourceStats:
    """Counts filled in while `iter_documents` runs, one `FileStats` per file, in reading order."""
    files: dict[str, FileStats] = field(default_factory=dict)

    def file(self, path: Path) -> FileStats:
        key = str(path)
        if key not in self.files:
            self.files[key] = FileStats(key, path.stat().st_size)
        return self.files[key]

    @property
    def documents(self) -> int:
        return sum(f.documents for f in self.files.values())

    @property
    def malformed(self) -> int:
        return sum(f.malformed for f in self.files.values())

    @property
    def repaired(self) -> int:
        return sum(f.repaired for f in self.files.values())


def _suffix(path: Path) -> str:
    """The format suffix, looking through a trailing `.gz`: data.jsonl.gz -> .jsonl."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        return suffixes[-1] if suffixes and suffixes[-1] != ".parquet" else ".gz"
    return suffixes[-1] if suffixes else ""


def _supported(path: Path) -> bool:
    return _suffix(path) in SUFFIXES


def resolve_inputs(paths: str | Path | Iterable[str | Path]) -> list[tuple[str, list[Path]]]:
    """Expand each input into its files: `[(input as given, [files...]), ...]`.

    Checks everything before any reading starts and raises one `DataError` listing every missing
    path, unmatched glob and unsupported file, so a typo fails in a second, not after an hour."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    groups, problems = [], []
    for given in paths:
        p = Path(given)
        if p.is_file():
            if not _supported(p):
                problems.append(f"{p}: unsupported file type {_suffix(p) or '(none)'!r} "
                                f"(supported: {', '.join(SUFFIXES)}, optionally .gz)")
            groups.append((str(given), [p]))
        elif p.is_dir():
            visible = sorted(f for f in p.rglob("*") if f.is_file()
                             and not any(part.startswith(".") for part in f.relative_to(p).parts))
            files = [f for f in visible if _supported(f)]
            groups.append((str(given), files))
            if not files:
                problems.append(f"{p}: directory has no {'/'.join(SUFFIXES)} files")
            elif len(files) < len(visible):
                other = [f.name for f in visible if not _supported(f)]
                warnings.warn(f"{p}: skipping {len(other)} file(s) of unsupported type, e.g. "
                              f"{', '.join(other[:3])}", DataWarning, stacklevel=2)
        elif any(ch in str(given) for ch in "*?["):
            matches = sorted(Path(m) for m in _glob.glob(str(given), recursive=True))
            files = []
            for m in matches:
                if m.is_dir():
                    files.extend(f for _, fs in resolve_inputs([m]) for f in fs)
                elif _supported(m):
                    files.append(m)
            groups.append((str(given), files))
            if not files:
                problems.append(f"{given}: glob matches no {'/'.join(SUFFIXES)} files")
        else:
            problems.append(f"{given}: no such file or directory")
    if not groups and not problems:
        problems.append("no input paths given")
    if problems:
        raise DataError("cannot read the data inputs:\n  " + "\n  ".join(problems))
    return groups


def iter_documents(paths: str | Path | Iterable[str | Path], text_field: str = "text", *,
                   txt_mode: str = "file", stats: SourceStats | None = None) -> Iterator[Document]:
    """Yield every usable document of `paths` in a deterministic order (inputs in the order given,
    files sorted within a directory or glob, records in file order). Empty texts are skipped.

    Pass a `SourceStats` to get per-file counts of documents, malformed and repaired records."""
    return iter_resolved(resolve_inputs(paths), text_field, txt_mode=txt_mode, stats=stats)


def iter_resolved(groups: list[tuple[str, list[Path]]], text_field: str = "text", *,
                  txt_mode: str = "file", stats: SourceStats | None = None) -> Iterator[Document]:
    """`iter_documents` over the output of `resolve_inputs` (for callers that need the file list
    first, e.g. to size a progress bar)."""
    if txt_mode not in TXT_MODES:
        raise ValueError(f"txt_mode must be one of {TXT_MODES}, got {txt_mode!r}")
    stats = stats if stats is not None else SourceStats()
    for given, files in groups:
        before = stats.documents
        for path in files:
            fs = stats.file(path)
            yield from _read_file(path, text_field, txt_mode, fs)
            if fs.malformed > MAX_WARNINGS_PER_FILE:
                _warn(f"{path}: {fs.malformed} malformed records in total "
                      f"(first {MAX_WARNINGS_PER_FILE} shown)")
        if stats.documents == before:
            raise DataError(_no_records_message(given, [stats.files[str(f)] for f in files], text_field))


def _no_records_message(given: str, files: list[FileStats], text_field: str) -> str:
    lines = [f"{given}: no usable record (field {text_field!r}) in "
             f"{len(files)} file{'s' if len(files) != 1 else ''}:"]
    for fs in files[:20]:
        why = ", ".join(f"{n} {reason}" for reason, n in fs.problems.most_common(3))
        if fs.empty:
            why = ", ".join(filter(None, [why, f"{fs.empty} empty"]))
        lines.append(f"  {fs.path}: {why or 'empty file'}")
    if len(files) > 20:
        lines.append(f"  ... and {len(files) - 20} more")
    keys = sorted(set().union(*(fs.keys_seen for fs in files)) - {text_field})
    if keys:
        lines.append(f"  records have the fields {keys[:10]}; choose one with text_field=...")
    return "\n".join(lines)


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


def _malformed(fs: FileStats, where: str, reason: str) -> None:
    fs.malformed += 1
    fs.problems[reason.split(":")[0]] += 1
    if fs.malformed <= MAX_WARNINGS_PER_FILE:
        _warn(f"{where}: {reason}; record skipped")


def _decode(raw: bytes, fs: FileStats, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fs.repaired += 1
        if fs.repaired <= MAX_WARNINGS_PER_FILE:
            _warn(f"{where}: invalid UTF-8 at byte {e.start}; replaced with U+FFFD")
        return raw.decode("utf-8", errors="replace")


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _read_file(path: Path, text_field: str, txt_mode: str, fs: FileStats) -> Iterator[Document]:
    suffix = _suffix(path)
    if suffix in TEXT_SUFFIXES:
        reader = _read_txt(path, txt_mode, fs)
    elif suffix == ".jsonl":
        reader = _read_jsonl(path, text_field, fs)
    elif suffix == ".json":
        reader = _read_json(path, text_field, fs)
    elif suffix == ".parquet":
        reader = _read_parquet(path, text_field, fs)
    else:  # resolve_inputs already refused these
        raise DataError(f"{path}: unsupported file type")
    for doc in reader:
        if doc.text:
            fs.documents += 1
            yield doc
        else:
            fs.empty += 1


def _read_txt(path: Path, mode: str, fs: FileStats) -> Iterator[Document]:
    src = str(path)
    if mode == "file":
        with _open(path) as f:
            raw = f.read()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        yield Document(_decode(raw, fs, f"{path}:1"), src, 1)
        return
    para: list[str] = []
    start = 0
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            line = _decode(raw, fs, f"{path}:{lineno}").rstrip("\r\n")
            if mode == "line":
                if line.strip():
                    yield Document(line, src, lineno)
            elif line.strip():
                para.append(line)
                start = start or lineno
            elif para:
                yield Document("\n".join(para), src, start)
                para, start = [], 0
    if para:
        yield Document("\n".join(para), src, start)


def _text_of(record, text_field: str, fs: FileStats, where: str) -> str | None:
    """The document text of one parsed JSON record, or None (reported) if it has none."""
    if not isinstance(record, dict):
        _malformed(fs, where, f"expected an object, got {type(record).__name__}")
        return None
    fs.keys_seen.update(list(record)[:50])
    if text_field not in record:
        _malformed(fs, where, f"missing field {text_field!r}")
        return None
    text = record[text_field]
    if not isinstance(text, str):
        _malformed(fs, where, f"field {text_field!r} is {type(text).__name__}, not a string")
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": not encodable text
        fs.repaired += 1
        if fs.repaired <= MAX_WARNINGS_PER_FILE:
            _warn(f"{where}: lone surrogate in field {text_field!r}; replaced with U+FFFD")
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _read_jsonl(path: Path, text_field: str, fs: FileStats) -> Iterator[Document]:
    src = str(path)
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(_decode(raw, fs, where))
            except json.JSONDecodeError as e:
                _malformed(fs, where, f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            text = _text_of(record, text_field, fs, where)
            if text is not None:
                yield Document(text, src, lineno)


def _read_json(path: Path, text_field: str, fs: FileStats) -> Iterator[Document]:
    with _open(path) as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        data = json.loads(_decode(raw, fs, f"{path}:1"))
    except json.JSONDecodeError as e:
        _malformed(fs, f"{path}:{e.lineno}", f"invalid JSON: {e.msg} at column {e.colno}")
        return
    records = data if isinstance(data, list) else [data]
    for i, record in enumerate(records, 1):
        text = _text_of(record, text_field, fs, f"{path}[record {i}]")
        if text is not None:
            yield Document(text, str(path), i)


def _read_parquet(path: Path, text_field: str, fs: FileStats) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from None
    schema = pf.schema_arrow
    if text_field not in schema.names:
        raise DataError(f"{path}: no column {text_field!r}; columns are {schema.names}; "
                        f"choose one with text_field=...")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column {text_field!r} has type {kind}, not string")
    row = 0
    for g in range(pf.num_row_groups):
        column = pf.read_row_group(g, columns=[text_field]).column(0)
        for text in column.to_pylist():
            row += 1
            if text is None:
                _malformed(fs, f"{path}[row {row}]", f"field {text_field!r} is null")
            else:
                yield Document(text, str(path), row)
