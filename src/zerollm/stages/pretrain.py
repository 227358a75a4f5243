"""`zerollm pretrain`: shards dir → run dir with checkpoints, metrics, loss plot and a report;
`zerollm quickstart`: text → tokenizer → shards → pretrain, in one command.

    run_dir/
      manifest.json      kind "run", stage "pretrain"
      config.yaml        the resolved PretrainConfig (defaults < YAML < overrides)
      metrics.jsonl      one line per logged step / evaluation
      loss.png           train and validation loss curves
      report.md          what was trained, how fast, how well, and samples
      checkpoints/step-N/ (see zerollm.train.checkpoint)
(set up and reported by zerollm/rundir.py, as for every training stage).

Runs unchanged under `torchrun --nproc_per_node=N`: each rank reads its slice of every global batch.

quickstart: the whole pipeline in one command, on a laptop CPU, in about five minutes.

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

import torch

from zerollm.artifacts import move_aside, read_manifest
from zerollm.config import PRESETS, load_config, model_config_from_preset
from zerollm.data.corpus import write_default_corpus
from zerollm.data.loader import TokenLoader
from zerollm.data.prepare import data_prepare
from zerollm.data.sources import iter_documents
from zerollm.errors import check_range
from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig
from zerollm.model.transformer import Transformer
from zerollm.objectives import LMObjective, evaluate_lm
from zerollm.rundir import finish_report, holds_run, start_run
from zerollm.runtime import setup_runtime
from zerollm.tokenizer.base import load_tokenizer
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.distributed import cleanup, failure_guard, init_distributed
from zerollm.train.loop import TrainConfig, train
from zerollm.train.parallel import full_model


@dataclass
class PretrainConfig:
    data: str = ""  # shards directory from `zerollm data prepare`
    out: str = "runs/pretrain"
    preset: str = "gpt-1m"
    model: dict = field(default_factory=dict)  # ModelConfig field overrides, e.g. {"n_layer": 6}
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False  # continue from the latest checkpoint in `out`
    overwrite: bool = False  # `out` holds another run: move it aside (rundir.py) instead of refusing
    sample_prompts: list = field(default_factory=lambda: ["The ", "In Python, "])
    sample_tokens: int = 80


def build_model_config(cfg: PretrainConfig, vocab_size: int):
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; known: {', '.join(PRESETS)}")
    overrides = {"vocab_size": vocab_size, **cfg.model}
    overrides.setdefault("max_seq_len", max(cfg.train.seq_len, PRESETS[cfg.preset].get("max_seq_len", 0)))
    return model_config_from_preset(cfg.preset, **overrides)


def samples_text(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int = 0) -> list[str]:
    """One sampled continuation per prompt, the prompts batched through the Engine (each seeded `seed`, so a
    prompt's sample is what it would be alone)."""
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, seed=seed,
                           stop_token_ids=[tokenizer.eos_id] if tokenizer.eos_id is not None else [])
    engine = Engine(model, tokenizer, max_batch_size=max(1, min(8, len(prompts))))
    outs = engine.generate([tokenizer.encode(p) for p in prompts], gen)
    return [p + tokenizer.decode(o[0].token_ids) for p, o in zip(prompts, outs)]


def pretrain(cfg: PretrainConfig | str | None = None, overrides: list[str] | dict | None = None,
             quiet: bool = False) -> dict:
    """Train a model on a shards directory. `cfg` may be a PretrainConfig or a YAML path."""
    if not isinstance(cfg, PretrainConfig):
        cfg = load_config(PretrainConfig, cfg, overrides)
    elif overrides:
        cfg = load_config(PretrainConfig, None, overrides, base=cfg)
    if not cfg.data:
        raise ValueError("pretrain: no data given (set data=SHARDS_DIR or --data)")
    tc = cfg.train
    info = init_distributed(tc.device, tc.dist_timeout_s)
    shards = read_manifest(cfg.data, "shards")
    tokenizer = load_tokenizer(Path(cfg.data) / "tokenizer")
    if shards.get("tokenizer_hash") and shards["tokenizer_hash"] != tokenizer.hash:
        raise ValueError(f"{cfg.data}: shards were made with tokenizer {shards['tokenizer_hash'][:12]}, "
                         f"but {cfg.data}/tokenizer is {tokenizer.hash[:12]}")
    model_cfg = build_model_config(cfg, tokenizer.vocab_size)
    setup_runtime(tc.device, d_model=model_cfg.d_model)  # malloc tuning for wide models (runtime.py)
    run = start_run(cfg.out, "pretrain", cfg, resume=cfg.resume, overwrite=cfg.overwrite, write=info.is_main,
                    data=str(cfg.data), model=model_cfg.to_dict())
    run_dir, resume_from = run.dir, run.resume_from

    torch.manual_seed(tc.seed)
    model = Transformer(model_cfg).to(info.device)
    loader = TokenLoader(cfg.data, split="train", batch_size=tc.batch_size, seq_len=tc.seq_len, seed=tc.seed,
                         rank=info.rank, world_size=info.world_size)
    val_loader = TokenLoader(cfg.data, split="val", batch_size=tc.batch_size, seq_len=tc.seq_len,
                             seed=tc.seed, mode="sequential")
    bytes_per_token = val_loader.bytes_per_token

    def evaluate(m: torch.nn.Module) -> dict:
        return evaluate_lm(m, val_loader.iter_eval_batches(tc.eval_batches), bytes_per_token)

    if info.is_main and not quiet:
        print(f"model: {model.describe()}")
        print(f"FLOPs per token (fwd+bwd, T={tc.seq_len}): {model.flops_per_token(tc.seq_len) / 1e6:.2f} M")

    before = samples_text(model, tokenizer, cfg.sample_prompts, cfg.sample_tokens) if (
        info.is_main and cfg.sample_tokens and resume_from is None) else []
    with failure_guard(info, tc.dist_timeout_s):
        summary = train(model, LMObjective(), loader, tc, run_dir, model_cfg=model_cfg, tokenizer=tokenizer,
                        evaluate=evaluate, resume_from=resume_from, config_yaml=run.config_yaml, dist_info=info)
        model = full_model(model)  # train.parallel=fsdp: gather the shards (all ranks) for samples and report
    if info.is_main:
        after = samples_text(model, tokenizer, cfg.sample_prompts, cfg.sample_tokens) if cfg.sample_tokens else []
        summary.update(samples_before=before, samples_after=after, run_dir=str(run_dir),
                       model=model.describe(), n_params=model.num_params())
        finish_report(run_dir, "pretrain", model, tc, summary, shards)
    cleanup(info)
    return summary


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

    def __post_init__(self) -> None:
        check_range("--minutes", self.minutes, 0.05, 24 * 60)
        for name in ("vocab_size", "seq_len", "batch_size"):
            check_range("--" + name.replace("_", "-"), getattr(self, name), 1, integer=True)
        check_range("--lr", self.lr, 0)


def quickstart(cfg: QuickstartConfig | None = None, **kw) -> dict:
    cfg = cfg or QuickstartConfig(**kw)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if holds_run(out):  # a quickstart always starts afresh; the previous run is kept, renamed (rundir.py)
        print(f"quickstart: moved the previous run aside to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.corpus:
        inputs = [str(p) for p in cfg.corpus]
        print(f"[1/4] corpus: {', '.join(inputs)}")
    else:
        path = write_default_corpus(out / "corpus.jsonl")
        inputs = [str(path)]
        print(f"[1/4] corpus: the Python documentation shipped with CPython → {path} "
              f"({path.stat().st_size / 1e6:.1f} MB)")
    print(f"[2/4] tokenizer: byte-level BPE, {cfg.vocab_size} tokens")
    texts = (doc.text for doc in iter_documents(inputs))
    train_bpe(texts, vocab_size=cfg.vocab_size).save(out / "tokenizer")
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
