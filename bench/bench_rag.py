"""RAG retrieval benchmark on JSQuAD (JGLUE v1.3 validation): does each question retrieve its paragraph?

Every paragraph is one document, indexed as a user would: its title and its full text ("title\\ntext";
JSQuAD's contexts are "title [SEP] text"). Each question's gold document is the paragraph it was written on.
Reports R@1/5/10 and MRR@10 (reciprocal rank of the gold paragraph, 0 past rank 10), indexing speed
(chunks/s: tokenize + build) and per-query latency, for, in one run on the same text and the same k1/b:

  * zerollm BM25 (rag/bm25.py: words for Latin/digits, character bigrams + kanji unigrams for Japanese runs)
  * bm25s with a plain character-bigram tokenizer passed to it (its best configuration for Japanese: its
    default tokenizer splits on whitespace/word boundaries, which Japanese has not) -- the peer to beat
  * bm25s with its default tokenizer (for reference)
  * with --embedder DIR: zerollm dense retrieval (rag/embed.py embedder, rag/retrieve.py, FAISS inner product)
    and hybrid (reciprocal-rank fusion of BM25 and dense, rag/retrieve.py)

    python bench/bench_rag.py [--data .../valid-v1.3.json] [--limit N] [--embedder MODEL_DIR] [--k1 1.5 --b 0.75]
"""
from __future__ import annotations

import argparse
import json
import time
import unicodedata
from pathlib import Path

import numpy as np

from zerollm.rag.bm25 import BM25

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "jglue_jsquad" / "valid-v1.3.json"


def load_jsquad(path: Path):
    """(documents "title\\ntext", [(question, gold document index)])."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paras, questions = [], []
    for article in data:
        for p in article["paragraphs"]:
            title, _, text = p["context"].partition("[SEP]")
            for qa in p["qas"]:
                questions.append((qa["question"], len(paras)))
            paras.append(title.strip() + "\n" + text.strip())
    return paras, questions


def char_bigrams(text: str) -> list[str]:
    """The peer's terms: NFKC + lower-case, every pair of adjacent characters without whitespace."""
    t = unicodedata.normalize("NFKC", text).lower()
    return [t[i:i + 2] for i in range(len(t) - 1) if not (t[i].isspace() or t[i + 1].isspace())]


def metrics(ranked: list[list[int]], gold: list[int]) -> dict[str, float]:
    out = {f"R@{k}": float(np.mean([g in r[:k] for r, g in zip(ranked, gold)])) for k in (1, 5, 10)}
    out["MRR"] = float(np.mean([1.0 / (r.index(g) + 1) if g in r[:10] else 0.0 for r, g in zip(ranked, gold)]))
    return out


def run_ours(paras, questions, k1, b):
    t0 = time.perf_counter()
    bm = BM25(k1=k1, b=b).index(paras)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = [[d for d, _ in bm.search(q, 10)] for q, _ in questions]
    return ranked, t_index, time.perf_counter() - t0


def _bm25s(paras, questions, k1, b, tokenize):
    import bm25s

    t0 = time.perf_counter()
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokenize(paras), show_progress=False)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = []
    for q, _ in questions:  # one query at a time, as a chat user asks them
        qt = tokenize([q])
        if not (qt.vocab if hasattr(qt, "vocab") else qt[0]):  # no term survived the tokenizer
            ranked.append([])
            continue
        docs, _ = retriever.retrieve(qt, k=10, show_progress=False)
        ranked.append([int(d) for d in docs[0]])
    return ranked, t_index, time.perf_counter() - t0


def run_bm25s_bigram(paras, questions, k1, b):
    return _bm25s(paras, questions, k1, b, lambda texts: [char_bigrams(t) for t in texts])


def run_bm25s_default(paras, questions, k1, b):
    import bm25s

    return _bm25s(paras, questions, k1, b, lambda texts: bm25s.tokenize(texts, show_progress=False))


def dense_runs(embedder_dir: str):
    """(name, fn) for dense and hybrid retrieval through RAGIndex + Retriever with the given embedder."""
    from zerollm.rag.chunk import Chunk
    from zerollm.rag.embed import load_embedder
    from zerollm.rag.index import RAGIndex
    from zerollm.rag.retrieve import Retriever

    state = {}

    def build(paras):
        if "index" not in state:
            t0 = time.perf_counter()
            index = RAGIndex(embedder=load_embedder(embedder_dir))
            index.add_chunks([Chunk(text=p, source=str(i)) for i, p in enumerate(paras)])  # ids 0..N-1 in order
            state["index"], state["t"] = index, time.perf_counter() - t0
        return state["index"], state["t"]

    def run(mode):
        def fn(paras, questions, k1, b):
            index, t_index = build(paras)
            index.bm25()  # BM25 built outside the query timing (k1/b: the library defaults)
            t0 = time.perf_counter()
            ranked = [[h.id for h in Retriever(index).search(q, 10, mode=mode)] for q, _ in questions]
            return ranked, t_index, time.perf_counter() - t0
        return fn
    return [("zerollm dense", run("dense")), ("zerollm hybrid (RRF bm25+dense)", run("hybrid"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N questions")
    ap.add_argument("--embedder", default="", help="zerollm checkpoint or sentence-transformers BERT dir")
    ap.add_argument("--k1", type=float, default=1.5)
    ap.add_argument("--b", type=float, default=0.75)
    args = ap.parse_args()
    paras, questions = load_jsquad(Path(args.data))
    if args.limit:
        questions = questions[:args.limit]
    gold = [g for _, g in questions]
    print(f"JSQuAD valid v1.3: {len(paras)} paragraphs (title + text), {len(questions)} questions, "
          f"k1={args.k1} b={args.b}")
    print(f"{'retriever':<34} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'index chunks/s':>15} {'query ms':>9}")
    runs = [("zerollm BM25", run_ours)]
    try:
        import bm25s  # noqa: F401
        runs += [("bm25s, char-bigram tokenizer", run_bm25s_bigram), ("bm25s, default tokenizer", run_bm25s_default)]
    except ImportError:
        print("(bm25s not installed: pip install bm25s)")
    if args.embedder:
        runs += dense_runs(args.embedder)
    for name, fn in runs:
        ranked, t_index, t_query = fn(paras, questions, args.k1, args.b)
        m = metrics(ranked, gold)
        print(f"{name:<34} {m['R@1']:6.3f} {m['R@5']:6.3f} {m['R@10']:6.3f} {m['MRR']:6.3f} "
              f"{len(paras) / t_index:15,.0f} {1000 * t_query / len(questions):9.2f}", flush=True)


if __name__ == "__main__":
    main()
