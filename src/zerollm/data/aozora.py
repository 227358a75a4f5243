"""Plain text from Aozora Bunko (青空文庫) files, for training and measuring Japanese tokenizers.

Aozora texts carry their own markup (see https://www.aozora.gr.jp/annotation/):

* the title and author lines, then a legend between two `-----` rules - dropped (everything up to and
  including the second rule);
* ruby (furigana): `漢字《かんじ》` - the reading in `《…》` is dropped, the base text kept;
* `｜` marks where a ruby base starts (`所々｜丹塗《にぬり》`) - dropped;
* editor's notes `［＃…］` (headings, emphasis, descriptions of characters outside JIS) - dropped;
* the colophon starting at a line beginning with `底本：` - dropped with everything after it.

Line endings are normalized to LF and trailing blank lines removed. A file without the header rules is
treated as body text.
"""
from __future__ import annotations

import re
from pathlib import Path

_RULE = re.compile(r"^-{5,}\s*$", re.M)
_RUBY = re.compile(r"《[^《》]*》")
_NOTE = re.compile(r"［＃[^［］]*(?:［[^［］]*］[^［］]*)*］")
_COLOPHON = re.compile(r"^底本：", re.M)


def strip_aozora(text: str) -> str:
    """Remove Aozora Bunko markup, header and colophon from the text of one file."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    rules = list(_RULE.finditer(text))
    if len(rules) >= 2:
        text = text[rules[1].end():]
    m = _COLOPHON.search(text)
    if m:
        text = text[:m.start()]
    text = _RUBY.sub("", text)
    text = _NOTE.sub("", text)
    text = text.replace("｜", "")
    return text.strip("\n") + "\n"


def read_aozora(path: str | Path) -> str:
    """Read an Aozora file (UTF-8, or Shift_JIS/CP932 as distributed) and strip its markup."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp932", errors="replace")
    return strip_aozora(text)
