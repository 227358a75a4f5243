"""`zerollm quickstart`: the whole pipeline in one command, on a laptop CPU, in about five minutes.

    corpus (embedded Python docs, or --corpus PATH...)
      → tokenizer train   runs/quickstart/tokenizer/
      → data prepare      runs/quickstart/shards/
      → pretrain          runs/quickstart/ (checkpoints/, metrics.jsonl, loss.png, report.md)
      → samples before and after, printed and in the report

The time budget covers everything; training gets whatever the first stages leave.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

@dataclass
class QuickstartConfig:
    corpus: list = field(default_factory=list)  # empty = the embedded Python documentation corpus
    out: str = "runs/quickstart"
    minutes: float = 5.0
    preset: str = "quickstart"
    vocab_size: int = 2048  # learned merges + 256 bytes; special tokens are added on top
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 1337
    device: str = "auto"


def quickstart(cfg: QuickstartConfig | None = None, **kw) -> dict:
    from zerollm.api import data_prepare, tokenizer_train
    from zerollm.pretrain import PretrainConfig, pretrain
    from zerollm.train.loop import TrainConfig

    cfg = cfg or QuickstartConfig(**kw)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.corpus:
        inputs = [str(p) for p in cfg.corpus]
        print(f"[1/4] corpus: {', '.join(inputs)}")
    else:
        from zerollm.data.corpus import write_default_corpus

        path = write_default_corpus(out / "corpus.jsonl")
        inputs = [str(path)]
        print(f"[1/4] corpus: the Python documentation shipped with CPython → {path} "
              f"({path.stat().st_size / 1e6:.1f} MB)")
    print(f"[2/4] tokenizer: byte-level BPE, {cfg.vocab_size} tokens")
    tokenizer_train(inputs, out / "tokenizer", vocab_size=cfg.vocab_size)
    print("[3/4] data prepare: tokenize into shards with a validation split")
    data_prepare(inputs, out / "tokenizer", out / "shards", val_fraction=0.05)
    spent = time.perf_counter() - t0
    train_minutes = max(0.5, cfg.minutes - spent / 60.0 - 0.25)  # keep ~15 s for samples and the report
    print(f"[4/4] pretrain: {train_minutes:.1f} minutes on {cfg.device}")
    tc = TrainConfig(steps=100_000, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr,
                     warmup_steps=50, schedule="wsd", decay_fraction=0.3, min_lr_ratio=0.0,
                     weight_decay=0.1, beta2=0.99, eval_every=150, eval_batches=16, ckpt_every=1000,
                     keep_last=1, log_every=10, seed=cfg.seed, device=cfg.device, max_minutes=train_minutes)
    pc = PretrainConfig(data=str(out / "shards"), out=str(out), preset=cfg.preset, train=tc,
                        sample_prompts=["The ", "A list is ", "To open a file, "], sample_tokens=60)
    summary = pretrain(pc)
    print("\nsamples before training:")
    for s in summary.get("samples_before", []):
        print("  " + s.replace("\n", "\n  "))
    print("\nsamples after training:")
    for s in summary.get("samples_after", []):
        print("  " + s.replace("\n", "\n  "))
    evals = summary.get("evals") or []
    if evals and "val_bpb" in evals[-1]:
        print(f"\nvalidation: {evals[-1]['val_loss']:.3f} nats/token, {evals[-1]['val_bpb']:.3f} bits per byte")
    total = time.perf_counter() - t0
    print(f"done in {total / 60:.1f} min → {out}/report.md")
    summary["total_s"] = total
    return summary
