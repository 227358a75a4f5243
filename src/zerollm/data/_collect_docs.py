"""Collect the docstrings of the Python standard library (run as a script in a child process).

Used by `zerollm.data.corpus`: importing hundreds of stdlib modules can print, warn, register atexit
hooks or change process state, so `corpus.py` runs this file with `python -I <this file> OUT.json`
and reads back the JSON it writes. This file imports only the standard library (it does not need
`zerollm` to be importable) and never executes strings.

Output: a JSON list of `{"title": "module <name>", "text": ...}`, one document per module that has
prose, modules in sorted order. A module's document is its docstring followed by the docstrings of
the classes, functions and methods it defines (members sorted by name; private helpers included,
their docstrings are prose too). Every docstring is
kept only the first time its exact text is seen, so inherited and re-exported docs appear once.
Private modules are skipped except the pure-Python twins of C modules (`_pydecimal`, `_pyio`, ...).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import sys
import warnings

# Top-level modules never imported: they open windows or browsers, print on import, are test
# suites, are generated tables rather than prose, or are covered elsewhere (pydoc_data).
SKIP_TOP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "__hello__",
    "__phello__", "pydoc_data", "encodings", "lib2to3", "msilib", "winreg",
    "winsound", "msvcrt", "_msi", "readline",
}
# Submodule path components that mark test code or demos.
SKIP_PARTS = {"test", "tests", "idle_test", "__main__", "_test", "testing", "demo", "demos"}
# Private modules that are the pure-Python twins of C modules: their docstrings are the real docs.
PY_TWINS = ["_pydecimal", "_pyio", "_strptime", "_threading_local"]
MIN_CHARS = 40          # shorter docstrings ("Return self.") are not prose
MAX_DEPTH = 3           # email.mime.text is depth 3


def _skip(name: str) -> bool:
    parts = name.split(".")
    if name in PY_TWINS:
        return False
    return (parts[0] in SKIP_TOP or any(p.startswith("_") for p in parts)
            or any(p in SKIP_PARTS for p in parts) or parts[0].startswith("test"))


def _quiet_import(name: str):
    """Import `name` with stdout/stderr sent to /dev/null; None if it fails in any way."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
            contextlib.redirect_stderr(devnull):
        try:
            return importlib.import_module(name)
        except BaseException:  # ImportError, OSError, SystemExit from modules that refuse to load
            return None


def _module_names() -> list[str]:
    """All importable public stdlib modules and their submodules, sorted."""
    names: set[str] = set()
    todo = sorted(n for n in sys.stdlib_module_names if not _skip(n)) + PY_TWINS
    while todo:
        name = todo.pop(0)
        if name in names:
            continue
        module = _quiet_import(name)
        if module is None:
            continue
        names.add(name)
        path = getattr(module, "__path__", None)
        if path and name.count(".") + 1 < MAX_DEPTH:
            children = sorted(f"{name}.{info.name}" for info in pkgutil.iter_modules(path))
            todo.extend(c for c in children if not _skip(c))
    return sorted(names)


def _clean(doc: str | None) -> str | None:
    if not doc:
        return None
    doc = doc.strip()
    return doc if len(doc) >= MIN_CHARS else None


def _members(module) -> list[tuple[str, object]]:
    """Classes and functions defined in `module` itself (not re-exported), sorted by name. Private
    helpers are included: their docstrings are prose about how the library works."""
    out = []
    for name, obj in sorted(vars(module).items()):
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        out.append((name, obj))
    return out


def module_document(module, seen: set[str]) -> str | None:
    """The prose of one module: its docstring, then each class/function/method docstring."""
    parts = []
    doc = _clean(inspect.getdoc(module))
    if doc and doc not in seen:
        seen.add(doc)
        parts.append(doc)
    for name, obj in _members(module):
        doc = _clean(inspect.getdoc(obj))
        if doc and doc not in seen:
            seen.add(doc)
            parts.append(f"{module.__name__}.{name}\n\n{doc}")
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not (inspect.isroutine(member) or isinstance(member, property)):
                    continue
                doc = _clean(inspect.getdoc(member))
                if doc and doc not in seen:
                    seen.add(doc)
                    parts.append(f"{module.__name__}.{name}.{attr}\n\n{doc}")
    return "\n\n".join(parts) if parts else None


def collect() -> list[dict]:
    seen: set[str] = set()
    documents = []
    for name in _module_names():
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            text = module_document(module, seen)
        except Exception:  # a getattr-happy module; its docs are not worth a crash
            continue
        if text:
            documents.append({"title": f"module {name}", "text": text})
    return documents


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python _collect_docs.py OUT.json", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    documents = collect()
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(documents, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
