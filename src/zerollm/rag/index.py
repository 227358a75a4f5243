"""The RAG index directory: chunks and metadata in SQLite, dense vectors in FAISS, BM25 rebuilt on open.

    INDEX/manifest.json   {"kind": "rag_index", "index_version": 1, "embedder": spec | null, ...}
    INDEX/chunks.sqlite   table chunks(id, source, title, heading, position, text, meta)
    INDEX/dense.faiss     IndexIDMap2(IndexFlatIP) over L2-normalized embeddings (only with an embedder)

`RAGIndex` is edited in memory (`add_documents`, `add_chunks`, `delete`) and written by `save()`, which
builds the whole directory at a temporary sibling and renames it into place (`artifacts.atomic_dir`): a
crash or an error mid-write leaves the previous index untouched and readable. Incremental add embeds only
the new chunks (old vectors are read back from FAISS); re-adding a source replaces its chunks.
An index written by another `index_version` is refused with a message saying to rebuild it.
The BM25 index is not stored: it is rebuilt from the chunk texts on first use (about 1e4 chunks/s).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

from zerollm.artifacts import atomic_dir, read_manifest, write_manifest

from . import RAGError
from .bm25 import BM25
from .chunk import Chunk, chunk_document

INDEX_VERSION = 1
KIND = "rag_index"


def _faiss():
    try:
        import faiss
    except ImportError:
        raise RAGError("dense retrieval needs FAISS: pip install 'zerollm[rag]' (faiss-cpu)") from None
    return faiss


class RAGIndex:
    """Chunks (+ optional dense vectors) of a document collection; see the module docstring."""

    def __init__(self, path: str | Path | None = None, embedder=None, max_chars: int = 500, overlap: int = 100):
        self.path = Path(path) if path is not None else None
        self.embedder = embedder
        self.max_chars, self.overlap = max_chars, overlap
        self.chunks: dict[int, Chunk] = {}  # chunk id -> chunk (ids are never reused)
        self.vectors: dict[int, np.ndarray] = {}  # chunk id -> (dim,) float32, only with an embedder
        self.next_id = 0
        self._bm25: BM25 | None = None
        self._bm25_ids: list[int] = []

    # ---- editing ----------------------------------------------------------------------------------
    def add_documents(self, docs: Iterable) -> int:
        """Chunk and add documents (`loaders.Document`); a source already indexed is replaced. Returns the
        number of chunks added."""
        chunks: list[Chunk] = []
        for doc in docs:
            if not doc.text.strip():
                continue
            self.delete(doc.source)
            chunks += chunk_document(doc, self.max_chars, self.overlap)
        return self.add_chunks(chunks)

    def add_chunks(self, chunks: list[Chunk]) -> int:
        chunks = [c for c in chunks if c.text.strip()]
        vecs = None
        if self.embedder is not None and chunks:
            vecs = np.asarray(self.embedder.encode([c.text for c in chunks]), dtype=np.float32)
        for i, c in enumerate(chunks):
            self.chunks[self.next_id] = c
            if vecs is not None:
                self.vectors[self.next_id] = vecs[i]
            self.next_id += 1
        self._bm25 = None
        return len(chunks)

    def delete(self, source: str) -> int:
        """Remove every chunk of a source (a file path, or "path:line" for a JSONL record; a file path also
        removes all of its records). Returns how many chunks were removed."""
        gone = [i for i, c in self.chunks.items() if c.source == source or c.source.startswith(source + ":")]
        for i in gone:
            del self.chunks[i]
            self.vectors.pop(i, None)
        if gone:
            self._bm25 = None
        return len(gone)

    # ---- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def sources(self) -> list[str]:
        return sorted({c.source for c in self.chunks.values()})

    def bm25(self) -> tuple[BM25, list[int]]:
        """(BM25 over the chunk texts, chunk id of each BM25 document), built on first use."""
        if self._bm25 is None:
            self._bm25_ids = list(self.chunks)
            self._bm25 = BM25().index([_indexed_text(self.chunks[i]) for i in self._bm25_ids])
        return self._bm25, self._bm25_ids

    def dense_search(self, query_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the k nearest chunks."""
        if not self.vectors:
            raise RAGError("this index has no dense vectors (it was built without --embedder)")
        faiss = _faiss()
        ids = np.fromiter(self.vectors, dtype=np.int64)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(len(next(iter(self.vectors.values())))))
        index.add_with_ids(np.stack([self.vectors[i] for i in ids]), ids)
        scores, found = index.search(np.asarray(query_vec, dtype=np.float32).reshape(1, -1), min(k, len(ids)))
        return [(int(i), float(s)) for i, s in zip(found[0], scores[0]) if i >= 0]

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write the index directory atomically (temporary sibling + rename)."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("RAGIndex.save: no path given")
        if path.exists() and not (path / "manifest.json").is_file():
            raise RAGError(f"{path} exists and is not a zerollm RAG index; refusing to overwrite it")
        with atomic_dir(path, KIND) as tmp:
            con = sqlite3.connect(tmp / "chunks.sqlite")
            try:
                con.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, source TEXT, title TEXT, heading TEXT,"
                            " position INTEGER, text TEXT, meta TEXT)")
                con.execute("CREATE INDEX chunks_source ON chunks(source)")
                con.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?)",
                                [(i, c.source, c.title, c.heading, c.position, c.text,
                                  json.dumps(c.meta, ensure_ascii=False)) for i, c in self.chunks.items()])
                con.commit()
            finally:
                con.close()
            dim = None
            if self.vectors:
                faiss = _faiss()
                ids = np.fromiter(self.vectors, dtype=np.int64)
                dim = len(self.vectors[int(ids[0])])
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
                index.add_with_ids(np.stack([self.vectors[int(i)] for i in ids]), ids)
                faiss.write_index(index, str(tmp / "dense.faiss"))
            write_manifest(tmp, KIND, index_version=INDEX_VERSION, n_chunks=len(self.chunks),
                           next_id=self.next_id, sources=len(self.sources), max_chars=self.max_chars,
                           overlap=self.overlap, dim=dim,
                           embedder=self.embedder.spec() if self.embedder is not None else None)
        self.path = path
        return path

    @classmethod
    def open(cls, path: str | Path, embedder=None) -> "RAGIndex":
        """Read an index directory. The embedder recorded in the manifest is loaded unless one is given."""
        path = Path(path)
        if not path.is_dir():
            raise RAGError(f"{path}: no such index directory (build one with `zerollm rag index`)")
        try:
            manifest = read_manifest(path, KIND)
        except (FileNotFoundError, ValueError) as e:
            raise RAGError(str(e)) from None
        version = manifest.get("index_version")
        if version != INDEX_VERSION:
            raise RAGError(f"{path}: index format version {version}, but this zerollm reads version "
                           f"{INDEX_VERSION}; rebuild it with `zerollm rag index`")
        if embedder is None and manifest.get("embedder"):
            from .embed import load_embedder
            embedder = load_embedder(manifest["embedder"])
        self = cls(path, embedder, manifest.get("max_chars", 500), manifest.get("overlap", 100))
        self.next_id = int(manifest.get("next_id", 0))
        con = sqlite3.connect(f"file:{path / 'chunks.sqlite'}?mode=ro", uri=True)
        try:
            for i, source, title, heading, pos, text, meta in con.execute("SELECT * FROM chunks ORDER BY id"):
                self.chunks[i] = Chunk(text, source, title, heading, pos, json.loads(meta))
        except sqlite3.DatabaseError as e:
            raise RAGError(f"{path / 'chunks.sqlite'}: unreadable ({e})") from None
        finally:
            con.close()
        if (path / "dense.faiss").is_file():
            faiss = _faiss()
            index = faiss.read_index(str(path / "dense.faiss"))
            ids = faiss.vector_to_array(index.id_map)
            vecs = index.index.reconstruct_n(0, index.ntotal)
            self.vectors = {int(i): vecs[j] for j, i in enumerate(ids)}
        self.next_id = max([self.next_id, *[i + 1 for i in self.chunks]])
        return self


def _indexed_text(c: Chunk) -> str:
    """What BM25 sees: the heading path and the chunk text."""
    return f"{c.heading}\n{c.text}" if c.heading else c.text


def build_index(inputs, out: str | Path, embedder=None, max_chars: int = 500, overlap: int = 100,
                delete: Iterable[str] = ()) -> RAGIndex:
    """Create `out`, or update it in place if it is already an index: documents from `inputs` are added
    (replacing earlier versions of the same files) and sources in `delete` removed; then saved atomically."""
    from .loaders import load_documents

    out = Path(out)
    if (out / "manifest.json").is_file():
        index = RAGIndex.open(out, embedder=embedder)
    else:
        index = RAGIndex(out, embedder, max_chars, overlap)
    for source in delete:
        if not index.delete(str(source)):
            raise RAGError(f"{out}: no chunks from {source!r} to delete")
    if inputs:
        index.add_documents(load_documents(inputs))
    index.save(out)
    return index
