"""Loaders, chunking and BM25: structure, overlap, Japanese boundaries, term splitting, retrieval."""
from __future__ import annotations

import math

import pytest

from zerollm.rag import RAGError, load_documents
from zerollm.rag.bm25 import BM25, tokenize_for_bm25
from zerollm.rag.chunk import chunk_text, split_sentences


def test_japanese_sentences():
    assert split_sentences("梅雨は雨季である。本当か？はい！ Mr. Smith paid 3.14 dollars. Done") == [
        "梅雨は雨季である。", "本当か？", "はい！", "Mr.", "Smith paid 3.14 dollars.", "Done"]


def test_chunks_respect_headings_size_and_overlap():
    body = "。".join(f"文{i:02d}はここにあります" for i in range(40)) + "。"
    text = f"# Top\n\nintro.\n\n## Part A\n\n{body}\n\n## Part B\n\nend."
    chunks = chunk_text(text, max_chars=100, overlap=30)
    assert [h for h, _ in chunks][0] == "Top" and chunks[-1] == ("Top > Part B", "end.")
    a = [c for h, c in chunks if h == "Top > Part A"]
    assert len(a) > 3 and all(len(c) <= 100 for c in a)
    for prev, nxt in zip(a, a[1:]):  # the next chunk repeats the previous chunk's last sentences (overlap)
        last = prev.split("。")[-2] + "。"
        assert nxt.startswith(prev[prev.index(nxt.split("。")[0]):]) and last in nxt
    assert all(c.endswith("。") for c in a)  # cut at sentence boundaries
    joined = "".join(a)
    assert all(f"文{i:02d}" in joined for i in range(40))


def test_chunk_hard_cut_and_bad_args():
    chunks = chunk_text("x" * 250, max_chars=100, overlap=10)
    assert [len(c) for _, c in chunks] == [100, 100, 50]
    with pytest.raises(ValueError):
        chunk_text("a", max_chars=10, overlap=10)


def test_term_splitting():
    # bigrams run across kanji/kana inside a Japanese run (道と); Latin/digits are words of their own
    assert tokenize_for_bm25("北海道とPython3.11") == ["北海", "海道", "道と", "北", "海", "道", "python3", "11"]
    assert tokenize_for_bm25("ＡＢＣ　カタカナ") == ["abc", "カタ", "タカ", "カナ"]  # NFKC + lower


def test_bm25_formula_and_ranking():
    bm = BM25().index(["a b", "a c", ""])
    idf = math.log1p((3 - 1 + 0.5) / 1.5)
    dl_norm = 1.5 * (1 - 0.75 + 0.75 * 2 / (4 / 3))
    assert bm.scores(["b"])[0] == pytest.approx(idf * 2.5 / (1 + dl_norm), rel=1e-5)
    assert bm.search("c", 5) == [(1, pytest.approx(bm.scores(["c"])[1]))]
    assert BM25().index([]).search("x") == []


def test_loaders(tmp_path):
    (tmp_path / "a.md").write_text("# Title A\n\ntext a", encoding="utf-8")
    (tmp_path / "b.html").write_text("<html><title>T</title><script>x=1</script><h1>Head</h1><p>para&amp;"
                                     "</p></html>", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text('{"text": "rec one", "title": "r", "lang": "en"}\n\n', encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.warns(UserWarning, match="empty"):
        docs = {d.source.split("/")[-1]: d for d in load_documents(tmp_path)}
    assert docs["a.md"].title == "Title A"
    assert docs["b.html"].text == "# Head\n\npara&" and docs["b.html"].title == "T"
    assert docs["c.jsonl:1"].meta == {"lang": "en"}


@pytest.mark.parametrize("name,content,msg", [
    ("bad.jsonl", b'{"text": 1}\n', "bad.jsonl:1"),
    ("bad2.jsonl", b"{oops\n", "invalid JSON"),
    ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
    ("x.pdf", b"%PDF", "unsupported file type"),
])
def test_loader_errors(tmp_path, name, content, msg):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(RAGError, match=msg):
        load_documents(tmp_path / name)


def test_loader_missing_and_all_empty(tmp_path):
    with pytest.raises(RAGError, match="no such file"):
        load_documents(tmp_path / "nope.txt")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(RAGError, match="no non-empty documents"), pytest.warns(UserWarning):
        load_documents(tmp_path)
