"""RAG retrieval benchmark on JSQuAD (JGLUE v1.3 validation): does each question retrieve its paragraph?

Every paragraph is one document; each question's gold document is the paragraph it was written on.
Reports recall@1/5/10 for zerollm's BM25 (Japanese-aware term splitting) beside `bm25s` with its default
tokenizer in the same run, plus indexing speed (chunks/s: tokenize + build) and per-query latency.

    python bench/bench_rag.py [--data /work/shared/data/jglue_jsquad/valid-v1.3.json] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zerollm.rag.bm25 import BM25

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "jglue_jsquad" / "valid-v1.3.json"


def load_jsquad(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paras, questions = [], []
    for article in data:
        for p in article["paragraphs"]:
            # JSQuAD contexts start with "title [SEP] "; keep the paragraph text only
            ctx = p["context"].split("[SEP]", 1)[-1].strip()
            for qa in p["qas"]:
                questions.append((qa["question"], len(paras)))
            paras.append(ctx)
    return paras, questions


def recall(ranked: list[list[int]], gold: list[int], ks=(1, 5, 10)) -> dict[int, float]:
    return {k: float(np.mean([g in r[:k] for r, g in zip(ranked, gold)])) for k in ks}


def run_ours(paras, questions):
    t0 = time.perf_counter()
    bm = BM25().index(paras)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = [[d for d, _ in bm.search(q, 10)] for q, _ in questions]
    t_query = time.perf_counter() - t0
    return ranked, t_index, t_query


def run_bm25s(paras, questions):
    import bm25s

    t0 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(paras, show_progress=False), show_progress=False)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = []
    for q, _ in questions:  # one query at a time, as a chat user asks them
        qt = bm25s.tokenize([q], show_progress=False)
        if not qt.vocab:  # no term survived the default tokenizer
            ranked.append([])
            continue
        docs, _ = retriever.retrieve(qt, k=10, show_progress=False)
        ranked.append([int(d) for d in docs[0]])
    t_query = time.perf_counter() - t0
    return ranked, t_index, t_query


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N questions")
    args = ap.parse_args()
    paras, questions = load_jsquad(Path(args.data))
    if args.limit:
        questions = questions[:args.limit]
    gold = [g for _, g in questions]
    print(f"JSQuAD valid v1.3: {len(paras)} paragraphs, {len(questions)} questions")
    print(f"{'retriever':<28} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'index chunks/s':>15} {'query ms':>9}")
    runs = [("zerollm BM25 (bigram+kanji)", run_ours)]
    try:
        import bm25s  # noqa: F401
        runs.append(("bm25s (default tokenizer)", run_bm25s))
    except ImportError:
        print("(bm25s not installed: pip install bm25s)")
    for name, fn in runs:
        ranked, t_index, t_query = fn(paras, questions)
        r = recall(ranked, gold)
        print(f"{name:<28} {r[1]:6.3f} {r[5]:6.3f} {r[10]:6.3f} {len(paras) / t_index:15,.0f} "
              f"{1000 * t_query / len(questions):9.2f}")


if __name__ == "__main__":
    main()
