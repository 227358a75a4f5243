"""See and compare tokenizers: `zerollm tokenizer stats` and `zerollm tokenizer compare`.

For held-out text files this measures, per tokenizer:

* **tokens per character** and **tokens per byte** (UTF-8): how much a tokenizer compresses. Lower is
  better at equal vocabulary size; a model's context holds 1/(tokens per char) characters per token.
* **vocabulary usage**: the share of the vocabulary that occurs at all (unused entries waste embedding rows),
* **unknown rate**: share of tokens that are `[UNK]`/`<unk>` (text the tokenizer cannot represent),
* **most frequent tokens**, and
* a **segmentation view**: the start of the text with alternating colors per token (ANSI in the
  terminal, and an HTML page for `compare --html`).

Files are read as UTF-8; invalid bytes are replaced by U+FFFD and counted (`invalid_utf8`), never a crash.
Aozora Bunko files (with `底本：` and ruby `《》`) are stripped of their markup first (data/aozora.py).

    tokenizer_stats(tokenizer_dir, files, top=20, sample_chars=300, print_report=True) -> dict
    tokenizer_compare(tokenizer_dirs, files, html_out=None, top=20, sample_chars=300, print_report=True) -> dict
"""
from __future__ import annotations

import collections
import html
import sys
from pathlib import Path

from zerollm.data.aozora import strip_aozora
from zerollm.tokenizer.base import load_tokenizer

_ANSI_BG = [153, 223, 194, 217, 189, 230, 152, 224]
_HTML_BG = ["#cfe8ff", "#ffe3b3", "#d4f5d4", "#ffd1dc", "#e3d7ff", "#fff6c2", "#c9f0ef", "#ffdede"]


def load_any(tokenizer):
    """A tokenizer object as is, or a tokenizer directory via `load_tokenizer`."""
    return load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer


def read_text(path) -> tuple[str, int]:
    """(text, number of invalid UTF-8 sequences replaced). Aozora markup is stripped."""
    data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    if "底本：" in text and "《" in text:
        text = strip_aozora(text)
    return text, bad


def _name(tokenizer) -> str:
    return str(tokenizer) if isinstance(tokenizer, (str, Path)) else type(tokenizer).__name__


def _unk_id(tok):
    for attr in ("unk_id",):
        if getattr(tok, attr, None) is not None:
            return getattr(tok, attr)
    table = getattr(tok, "table", None)
    return getattr(table, "unk_id", None)


def token_label(tok, i: int) -> str:
    """A readable form of one token: its text (spaces shown as ▁), or its piece name."""
    if hasattr(tok, "id_to_piece"):
        return tok.id_to_piece(i)
    if hasattr(tok, "vocab") and isinstance(tok.vocab, list) and i < len(tok.vocab):
        return tok.vocab[i]
    b = tok.token_bytes(i)
    s = b.decode("utf-8", errors="backslashreplace")
    return s.replace(" ", "▁").replace("\n", "\\n")


def segments(tok, text: str) -> list[tuple[str, list[int]]]:
    """Cut `text`'s encoding into displayable pieces: (surface, ids). Tokens that end inside a UTF-8
    character are grouped with the following ones until the bytes decode."""
    out, buf, ids = [], b"", []
    for i in tok.encode(text):
        buf += tok.token_bytes(i)
        ids.append(i)
        try:
            s = buf.decode("utf-8")
        except UnicodeDecodeError:
            if len(buf) < 8:
                continue
            s = buf.decode("utf-8", errors="replace")
        out.append((s, ids))
        buf, ids = b"", []
    if ids:
        out.append((buf.decode("utf-8", errors="replace"), ids))
    return out


def ansi_segmentation(segs) -> str:
    parts = []
    for k, (s, _) in enumerate(segs):
        s = s.replace("\n", "↵\n")
        parts.append(f"\x1b[30;48;5;{_ANSI_BG[k % len(_ANSI_BG)]}m{s}\x1b[0m")
    return "".join(parts)


def _stats(tok, texts: list[str], top: int, sample_chars: int) -> dict:
    counts: collections.Counter = collections.Counter()
    n_chars = n_bytes = n_tokens = 0
    for text in texts:
        for line in text.splitlines(keepends=True):
            ids = tok.encode(line)
            counts.update(ids)
            n_tokens += len(ids)
            n_chars += len(line)
            n_bytes += len(line.encode("utf-8"))
    unk = _unk_id(tok)
    sample = "".join(texts)[:sample_chars]
    segs = segments(tok, sample) if sample else []
    return {
        "algorithm": getattr(tok, "algorithm", type(tok).__name__),
        "vocab_size": tok.vocab_size, "chars": n_chars, "bytes": n_bytes, "tokens": n_tokens,
        "tokens_per_char": n_tokens / max(n_chars, 1), "tokens_per_byte": n_tokens / max(n_bytes, 1),
        "chars_per_token": n_chars / max(n_tokens, 1),
        "vocab_used": len(counts), "vocab_usage": len(counts) / max(tok.vocab_size, 1),
        "unk_rate": (counts.get(unk, 0) / max(n_tokens, 1)) if unk is not None else 0.0,
        "top_tokens": [(token_label(tok, i), i, c) for i, c in counts.most_common(top)],
        "segmentation": [s for s, _ in segs], "segmentation_ids": [ids for _, ids in segs],
    }


def _read_all(files) -> tuple[list[str], int]:
    if isinstance(files, (str, Path)):
        files = [files]
    texts, bad = [], 0
    for f in files:
        t, b = read_text(f)
        texts.append(t)
        bad += b
    if not any(t.strip() for t in texts):
        raise ValueError(f"no text in {[str(f) for f in files]}: nothing to measure")
    return texts, bad


def _print_one(name: str, s: dict, out) -> None:
    print(f"== {name}  ({s['algorithm']}, vocab {s['vocab_size']})", file=out)
    print(f"   tokens/char {s['tokens_per_char']:.4f}   tokens/byte {s['tokens_per_byte']:.4f}   "
          f"chars/token {s['chars_per_token']:.3f}   tokens {s['tokens']}", file=out)
    print(f"   vocab used {s['vocab_used']}/{s['vocab_size']} ({100 * s['vocab_usage']:.1f}%)   "
          f"unknown {100 * s['unk_rate']:.3f}%", file=out)
    print("   top: " + "  ".join(f"{lab}×{c}" for lab, _, c in s["top_tokens"][:12]), file=out)
    color = getattr(out, "isatty", lambda: False)()
    segs = list(zip(s["segmentation"], s["segmentation_ids"]))
    print("   " + (ansi_segmentation(segs) if color else " | ".join(x for x, _ in segs)), file=out)


def tokenizer_stats(tokenizer_dir, files, top: int = 20, sample_chars: int = 300,
                    print_report: bool = True, out=None) -> dict:
    """Statistics of one tokenizer (a directory or a Tokenizer object) on text files."""
    texts, bad = _read_all(files)
    tok = load_any(tokenizer_dir)
    s = _stats(tok, texts, top, sample_chars)
    s["invalid_utf8"] = bad
    s["tokenizer"] = _name(tokenizer_dir)
    if print_report:
        _print_one(s["tokenizer"], s, out or sys.stdout)
    return s


def tokenizer_compare(tokenizer_dirs, files, html_out=None, top: int = 20, sample_chars: int = 300,
                      print_report: bool = True, out=None) -> dict:
    """Side-by-side statistics of several tokenizers on the same files; optionally an HTML page."""
    texts, bad = _read_all(files)
    results = {}
    for d in tokenizer_dirs:
        s = _stats(load_any(d), texts, top, sample_chars)
        s["invalid_utf8"] = bad
        name = _name(d)
        while name in results:
            name += "'"
        results[name] = s
    out = out or sys.stdout
    if print_report:
        print(f"{'tokenizer':40s} {'algorithm':>10s} {'vocab':>7s} {'tok/char':>9s} {'tok/byte':>9s} "
              f"{'used%':>6s} {'unk%':>7s}", file=out)
        for name, s in results.items():
            print(f"{name[-40:]:40s} {s['algorithm']:>10s} {s['vocab_size']:7d} {s['tokens_per_char']:9.4f} "
                  f"{s['tokens_per_byte']:9.4f} {100 * s['vocab_usage']:6.1f} {100 * s['unk_rate']:7.3f}",
                  file=out)
        for name, s in results.items():
            _print_one(name, s, out)
    report = {"files": [str(f) for f in ([files] if isinstance(files, (str, Path)) else files)],
              "invalid_utf8": bad, "tokenizers": results}
    if html_out:
        from zerollm.artifacts import atomic_write_text

        atomic_write_text(html_out, render_html(report))
        report["html"] = str(html_out)
    return report


def render_html(report: dict) -> str:
    """A self-contained HTML page: the comparison table, most frequent tokens and colored segmentations."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(n)}</td><td>{e(str(s['algorithm']))}</td><td>{s['vocab_size']}</td>"
        f"<td>{s['tokens_per_char']:.4f}</td><td>{s['tokens_per_byte']:.4f}</td>"
        f"<td>{100 * s['vocab_usage']:.1f}%</td><td>{100 * s['unk_rate']:.3f}%</td></tr>"
        for n, s in report["tokenizers"].items())
    blocks = []
    for n, s in report["tokenizers"].items():
        spans = "".join(
            f'<span style="background:{_HTML_BG[k % len(_HTML_BG)]}" title="{e(",".join(map(str, ids)))}">'
            f"{e(seg).replace(chr(10), '↵<br>')}</span>"
            for k, (seg, ids) in enumerate(zip(s["segmentation"], s["segmentation_ids"])))
        topt = ", ".join(f"<code>{e(lab)}</code>×{c}" for lab, _, c in s["top_tokens"])
        blocks.append(f"<h2>{e(n)}</h2><p>{s['tokens']} tokens for {s['chars']} characters. "
                      f"Most frequent: {topt}</p><div class=seg>{spans}</div>")
    return ("<!doctype html><html><head><meta charset=utf-8><title>zerollm tokenizer comparison</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{padding:2px 8px}"
            ".seg{font-family:monospace;line-height:1.9;white-space:pre-wrap}"
            ".seg span{border-radius:3px;padding:1px 0}</style></head><body>"
            f"<h1>Tokenizer comparison</h1><p>files: {e(', '.join(report['files']))}</p>"
            "<table><tr><th>tokenizer</th><th>algorithm</th><th>vocab</th><th>tokens/char</th>"
            f"<th>tokens/byte</th><th>vocab used</th><th>unknown</th></tr>{rows}</table>"
            + "".join(blocks) + "</body></html>\n")
