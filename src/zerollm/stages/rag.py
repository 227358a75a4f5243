"""`zerollm rag index | ask`: retrieval-augmented answers from your own documents (zerollm/rag/).

    zerollm rag index DOCS... --out INDEX [--embedder DIR] [--delete SOURCE]
    zerollm rag ask INDEX "question" [--model DIR] [-k 4] [--mode auto|bm25|dense|hybrid]
"""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import remove_stale_tmp
from zerollm.loading import load_for_use
from zerollm.rag.answer import Answer, answer
from zerollm.rag.embed import load_embedder
from zerollm.rag.index import RAGIndex, build_index
from zerollm.rag.retrieve import Retriever


@dataclass
class RagIndexConfig:
    docs: list = field(default_factory=list,
                       metadata={"positional": "*", "help": "files or directories to add (re-adding a file replaces "
                                 "it)"})
    out: str = field(default="", metadata={"required": True, "help": "index directory (updated in place if it exists)"})
    delete: list = field(default_factory=list, metadata={"help": "remove a source from the index (repeatable)"})
    embedder: str | None = field(default=None,
                                 metadata={"help": "sentence-transformers or zerollm model dir (dense + hybrid)"})
    chunk_chars: int = 500
    overlap: int = 100


@dataclass
class RagAskConfig:
    index: str = field(default="", metadata={"positional": True, "help": "index directory"})
    question: str = field(default="", metadata={"positional": True})
    model: str | None = field(default=None, metadata={"help": "model to answer with; without it, print the passages"})
    k: int = field(default=4, metadata={"flag": "-k", "help": "passages to retrieve"})
    mode: str = field(default="auto", metadata={"choices": ("auto", "bm25", "dense", "hybrid")})
    max_new_tokens: int = 200
    device: str = "auto"


def rag_index(docs: list[str], out: str | Path, embedder: str | None = None, max_chars: int = 500,
              overlap: int = 100, delete: list[str] = ()):
    """Build or update (add/replace/delete sources) an index directory atomically."""
    remove_stale_tmp(Path(out).parent, glob.escape(Path(out).name))  # left by a killed earlier run
    emb = load_embedder(embedder) if embedder else None
    return build_index(list(docs), out, embedder=emb, max_chars=max_chars, overlap=overlap, delete=delete)


def rag_ask(index: str | Path, question: str, model: str | Path | None = None, k: int = 4, mode: str = "auto",
            max_new_tokens: int = 200, device: str = "auto", stream=None) -> Answer:
    """Retrieve passages and (with a model) answer with numbered citations."""
    retriever = Retriever(RAGIndex.open(index))
    if model is None:
        hits = retriever.search(question, k=k, mode=mode)
        passages = [{"n": i, "source": h.chunk.source, "heading": h.chunk.heading, "text": h.chunk.text}
                    for i, h in enumerate(hits, 1)]
        body = "\n\n".join(f"[{p['n']}] {p['text']}" for p in passages) or "(no matching passages)"
        return Answer(body, passages, passages)
    loaded = load_for_use(model, device)
    return answer(question, retriever, loaded.model, loaded.tokenizer, k=k, mode=mode,
                  max_new_tokens=max_new_tokens, stream=stream, template=loaded.chat_template)


__all__ = ["rag_index", "rag_ask"]
