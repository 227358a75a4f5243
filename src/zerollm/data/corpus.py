"""The embedded default corpus: the Python documentation that ships with every CPython.

The quickstart needs real English prose without touching the network. Every CPython carries two
sources of it:
  * `pydoc_data.topics.topics`: the language reference topics `help()` shows (~465 KB), and
  * the docstrings of the standard library: modules, classes, functions and methods (~1.6 MB),
together about 2 MB of text.

Collecting docstrings means importing ~600 stdlib modules, which can print, warn or change process
state, so it runs in a child process (`python -I zerollm/data/_collect_docs.py OUT.json`, a script
file in this package; no strings are executed) and the parent only reads the JSON it writes.

The result is deterministic for a given Python version (modules and members sorted, docstrings
deduplicated in that order) and cached as JSONL at `$ZEROLLM_CACHE_DIR/corpus-py<X.Y.Z>.jsonl`
(default cache dir `~/.cache/zerollm`), written atomically, so later calls take milliseconds.

    default_corpus_documents() -> list[dict]   # [{"title": ..., "text": ...}], topics then modules
    default_corpus_text() -> str               # all documents joined by blank lines
    write_default_corpus(path) -> Path         # JSONL, one document per line: `data prepare` input
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from zerollm.artifacts import atomic_write_text

_COLLECTOR = Path(__file__).with_name("_collect_docs.py")
_TIMEOUT_S = 300


def cache_dir() -> Path:
    """`$ZEROLLM_CACHE_DIR` if set, else `~/.cache/zerollm`."""
    env = os.environ.get("ZEROLLM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "zerollm"


def _cache_path() -> Path:
    v = sys.version_info
    return cache_dir() / f"corpus-py{v.major}.{v.minor}.{v.micro}.jsonl"


def _topic_documents() -> list[dict]:
    from pydoc_data.topics import topics  # plain dict of str -> str, no side effects

    return [{"title": f"topic {name}", "text": topics[name].strip()} for name in sorted(topics)
            if topics[name].strip()]


def _docstring_documents() -> list[dict]:
    """Run the collector script in an isolated child process and read its JSON output."""
    with tempfile.TemporaryDirectory(prefix="zerollm-corpus-") as tmp:
        out = Path(tmp) / "docs.json"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.run([sys.executable, "-I", str(_COLLECTOR), str(out)], cwd=tmp, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=_TIMEOUT_S)
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"collecting stdlib docstrings failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def default_corpus_documents() -> list[dict]:
    """The corpus as documents `{"title", "text"}`: pydoc topics (sorted) then stdlib modules (sorted).
    Built once per Python version and cached (see module docstring)."""
    path = _cache_path()
    if path.is_file():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    documents = _topic_documents() + _docstring_documents()
    atomic_write_text(path, _to_jsonl(documents))
    return documents


def _to_jsonl(documents: list[dict]) -> str:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents)


def default_corpus_text() -> str:
    """All default-corpus documents joined by blank lines (about 2 MB of English prose)."""
    return "\n\n".join(d["text"] for d in default_corpus_documents())


def write_default_corpus(path: str | Path) -> Path:
    """Write the default corpus as JSONL (`{"title", "text"}` per line, one line per pydoc topic or
    stdlib module), so `data_prepare` sees ~440 documents and can hold some out for validation."""
    path = Path(path)
    atomic_write_text(path, _to_jsonl(default_corpus_documents()))
    return path
