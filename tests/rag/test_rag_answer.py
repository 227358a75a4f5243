"""RAG answers with citations, too-long questions, the CLI, and dense/hybrid retrieval with a zerollm
model's mean-pooled embeddings."""
from __future__ import annotations

import pytest
import torch

from zerollm.cli import main
from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.rag import RAGError
from zerollm.rag.answer import answer
from zerollm.rag.embed import load_embedder
from zerollm.rag.index import RAGIndex, build_index
from zerollm.rag.retrieve import Retriever
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tok = train_bpe(["富士山は日本で一番高い山です。 Paris is the capital of France. [1] [2] " * 20],
                    vocab_size=300, show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=512)
    path = tmp_path_factory.mktemp("m") / "ckpt"
    save_checkpoint(path, Transformer(cfg), cfg, tokenizer=tok)
    return path


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "fuji.md").write_text("# 富士山\n\n富士山は日本で一番高い山です。", encoding="utf-8")
    (d / "paris.txt").write_text("Paris is the capital of France.", encoding="utf-8")
    return d


def test_answer_with_citations_and_too_long_question(ckpt, docs, tmp_path):
    from zerollm.loading import load

    loaded = load(ckpt)

    model, tok = loaded.model, loaded.tokenizer
    r = Retriever(build_index([docs], tmp_path / "idx"))
    ans = answer("富士山はどこ？", r, model, tok, k=2, max_new_tokens=8)
    assert ans.passages and ans.passages[0]["source"].endswith("fuji.md")
    assert all(c in ans.passages for c in ans.citations)
    with pytest.raises(RAGError, match="question is too long"):
        answer("very long question " * 200, r, model, tok, max_new_tokens=8)


def test_dense_and_hybrid_with_zerollm_embedder(ckpt, docs, tmp_path):
    emb = load_embedder(ckpt)
    idx = build_index([docs], tmp_path / "idx", embedder=emb)
    again = RAGIndex.open(tmp_path / "idx")  # reloads the embedder named in the manifest
    assert len(again.vectors) == 2 and again.embedder.spec() == emb.spec()
    v = emb.encode(["Paris is the capital of France."])[0]
    assert abs(float((v * v).sum()) - 1) < 1e-5
    assert Retriever(again).search("Paris is the capital of France.", k=1, mode="dense")[0].chunk.source.endswith(
        "paris.txt")
    hybrid = Retriever(again).search("富士山", k=2, mode="hybrid")
    assert len(hybrid) == 2 and hybrid[0].chunk.source.endswith("fuji.md")
    build_index([], tmp_path / "idx", delete=[str(docs / "paris.txt")])
    assert len(RAGIndex.open(tmp_path / "idx").vectors) == 1 == len(idx.vectors) - 1


def test_cli_index_and_ask(docs, tmp_path, capsys, ckpt):
    assert main(["rag", "index", str(docs), "--out", str(tmp_path / "idx")]) == 0
    assert "2 chunks from 2 sources" in capsys.readouterr().out
    assert main(["rag", "ask", str(tmp_path / "idx"), "capital of France", "-k", "1"]) == 0
    assert "Paris is the capital" in capsys.readouterr().out
    assert main(["rag", "ask", str(tmp_path / "idx"), "capital?", "--model", str(ckpt), "--max-new-tokens", "4"]) == 0
    assert main(["rag", "index", str(tmp_path / "nope"), "--out", str(tmp_path / "i2")]) == 2
    assert "no such file" in capsys.readouterr().err
