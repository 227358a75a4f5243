"""docs/seeds_walkthrough.md, "Data, LoRA and RAG listings": every listing runs as written, on tiny models.

Each `###` section runs in a fresh directory after the Setup section: its ```python blocks in order in one
namespace, and each `zerollm …` line of its ```bash blocks through `zerollm.cli.main` (must exit 0). The
code executed is the project's own documentation, never model or user text."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "seeds_walkthrough.md"
HEADING = "## Data, LoRA and RAG listings"


def _sections() -> dict[str, list[tuple[str, str]]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(HEADING) + len(HEADING)
    end = re.search(r"^## ", text[start:], re.M)
    body = text[start:start + end.start()] if end else text[start:]
    out: dict[str, list[tuple[str, str]]] = {}
    for part in re.split(r"^### ", body, flags=re.M)[1:]:
        title = part.splitlines()[0].strip()
        out[title] = re.findall(r"^```(python|bash)\n(.*?)^```", part, re.S | re.M)
    return out


SECTIONS = _sections()
SETUP = next(t for t in SECTIONS if t.startswith("Setup"))


def _run(blocks, ns: dict) -> None:
    from zerollm.cli import main

    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, f"{DOC.name}:{lang}", "exec"), ns)  # noqa: S102 (our own documentation)
        else:
            for line in code.splitlines():
                if line.startswith("zerollm "):
                    assert main(shlex.split(line)[1:]) in (0, None), line


def test_the_section_has_its_listings():
    assert set(SECTIONS) >= {SETUP} and len(SECTIONS) == 5
    assert all(SECTIONS[t] for t in SECTIONS)


@pytest.mark.parametrize("title", [t for t in SECTIONS if t != SETUP])
def test_listing_runs(title, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "walkthrough"}
    _run(SECTIONS[SETUP], ns)
    _run(SECTIONS[title], ns)
