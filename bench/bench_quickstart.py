"""The main job's own quality: `zerollm quickstart` vs nanoGPT's CPU recipe on the same corpus, one run.

1. nanoGPT's CPU recipe (configs/nanogpt-char.yaml: GPT-2 blocks 4x128x4, context 64, batch 12, lr 1e-3
   cosine) trained character-level — here byte-level, the same thing for this ASCII-heavy text — on the
   embedded Python-docs corpus for 3500 iterations, scored in bits per byte on the held-out split.
2. `zerollm quickstart` with its defaults (5-minute budget), scored on the same held-out documents
   (the split is by document with the same seed, so both hold out identical text).

    python bench/bench_quickstart.py [--skip-nanogpt] [--minutes 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine  # noqa: E402


def nanogpt_char(work: Path, corpus: Path, steps: int) -> dict:
    from zerollm.api import data_prepare, tokenizer_train
    from zerollm.config import load_config
    from zerollm.stages.pretrain import PretrainConfig, pretrain

    tokenizer_train([str(corpus)], work / "bytes-tok", vocab_size=256 + 16, show_progress=False)  # bytes + specials: no merges
    data_prepare([str(corpus)], work / "bytes-tok", work / "bytes-shards", val_fraction=0.05, show_progress=False)
    pc = load_config(PretrainConfig, REPO / "configs" / "nanogpt-char.yaml",
                     [f"data={work / 'bytes-shards'}", f"out={work / 'nanogpt'}", f"train.steps={steps}",
                      "train.eval_every=500", "train.eval_batches=200", "train.ckpt_every=0", "sample_tokens=0",
                      "train.eval_at_start=false"])
    t0 = time.perf_counter()
    summary = pretrain(pc, quiet=True)
    return {"wall_s": time.perf_counter() - t0, **summary["evals"][-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--nanogpt-steps", type=int, default=3500)
    ap.add_argument("--skip-nanogpt", action="store_true")
    ap.add_argument("--out", default=None, help="keep the quickstart run here (default: a temp dir)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from zerollm.data.corpus import write_default_corpus
    from zerollm.stages.pretrain import quickstart

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        corpus = write_default_corpus(work / "corpus.jsonl")
        rows = []
        if not args.skip_nanogpt:
            r = nanogpt_char(work, corpus, args.nanogpt_steps)
            rows.append(("nanoGPT CPU recipe, char-level", r["wall_s"], r["val_bpb"]))
        t0 = time.perf_counter()
        s = quickstart(out=args.out or str(work / "quickstart"), minutes=args.minutes)
        rows.append((f"zerollm quickstart (--minutes {args.minutes:g})", time.perf_counter() - t0,
                     s["evals"][-1]["val_bpb"]))
    print(f"\n{'':40s} {'wall s':>8s} {'val bits/byte':>14s}")
    for name, wall, bpb in rows:
        print(f"{name:40s} {wall:8.1f} {bpb:14.3f}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
