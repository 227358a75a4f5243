"""RAG index round trips (add, delete, reopen), atomic writes, version check; retrieval on a small
Japanese + English set."""
from __future__ import annotations

import json

import pytest

from zerollm.rag import RAGError
from zerollm.rag.index import RAGIndex, build_index
from zerollm.rag.loaders import Document
from zerollm.rag.retrieve import Retriever, rrf

DOCS = {
    "tsuyu.txt": "梅雨は、北海道と小笠原諸島を除く日本の各地で見られる雨季の一種である。5月から7月にかけて雨が続く。",
    "fuji.txt": "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートル、日本最高峰の山である。",
    "sushi.txt": "寿司は酢飯と魚介類を組み合わせた日本料理で、江戸時代に握り寿司が広まった。",
    "python.md": "# Python\n\nPython is a programming language created by Guido van Rossum in 1991.",
    "paris.md": "# Paris\n\nParis is the capital of France; the Eiffel Tower was built there in 1889.",
}
QUESTIONS = [("日本で梅雨がないのは北海道とどこか。", "tsuyu.txt"), ("富士山の標高は何メートルか", "fuji.txt"),
             ("握り寿司が広まったのはいつ？", "sushi.txt"), ("Who created Python?", "python.md"),
             ("When was the Eiffel tower built?", "paris.md")]


@pytest.fixture
def docs_dir(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    for name, text in DOCS.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def test_retrieval_ja_en(docs_dir, tmp_path):
    build_index([docs_dir], tmp_path / "idx")
    r = Retriever(RAGIndex.open(tmp_path / "idx"))
    for q, gold in QUESTIONS:
        assert r.search(q, k=1)[0].chunk.source.endswith(gold), q


def test_round_trip_add_delete_reopen(docs_dir, tmp_path):
    out = tmp_path / "idx"
    build_index([docs_dir / "tsuyu.txt", docs_dir / "fuji.txt"], out)
    assert len(RAGIndex.open(out).sources) == 2
    build_index([docs_dir / "sushi.txt"], out)  # incremental add
    idx = RAGIndex.open(out)
    assert len(idx.sources) == 3 and len(idx) == 3
    build_index([docs_dir / "sushi.txt"], out)  # re-adding a source replaces it
    assert len(RAGIndex.open(out)) == 3
    build_index([], out, delete=[str(docs_dir / "fuji.txt")])
    idx = RAGIndex.open(out)
    assert [s.split("/")[-1] for s in idx.sources] == ["sushi.txt", "tsuyu.txt"]
    assert Retriever(idx).search("富士山", k=3) == [] or all("fuji" not in h.chunk.source
                                                           for h in Retriever(idx).search("富士山", k=3))
    with pytest.raises(RAGError, match="no chunks"):
        build_index([], out, delete=["nothing.txt"])
    assert idx.next_id == 4  # ids are never reused


def test_crash_mid_write_keeps_old_index(docs_dir, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index([docs_dir / "tsuyu.txt"], out)
    idx = RAGIndex.open(out)
    idx.add_documents([Document("new text", "new.txt")])

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("zerollm.rag.index.write_manifest", boom)  # fails after chunks.sqlite is written
    with pytest.raises(OSError, match="disk full"):
        idx.save()
    monkeypatch.undo()
    again = RAGIndex.open(out)
    assert len(again) == 1 and again.chunks[0].text.startswith("梅雨")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "idx"]  # no temporary left behind


def test_version_and_kind_checks(docs_dir, tmp_path):
    out = tmp_path / "idx"
    build_index([docs_dir / "tsuyu.txt"], out)
    m = json.loads((out / "manifest.json").read_text())
    m["index_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RAGError, match="version 99.*rebuild"):
        RAGIndex.open(out)
    with pytest.raises(RAGError, match="no such index"):
        RAGIndex.open(tmp_path / "missing")
    (tmp_path / "notidx").mkdir()
    (tmp_path / "notidx" / "x").write_text("keep me")
    with pytest.raises(RAGError, match="not a zerollm RAG index"):
        RAGIndex(tmp_path / "notidx").save()


def test_rrf_and_modes(docs_dir, tmp_path):
    assert rrf([[1, 2, 3], [3, 1]])[0][0] == 1
    idx = build_index([docs_dir], tmp_path / "idx")
    with pytest.raises(RAGError, match="embedder"):
        Retriever(idx).search("x", mode="dense")
    with pytest.raises(RAGError, match="empty question"):
        Retriever(idx).search("  ")
