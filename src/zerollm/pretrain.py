"""`zerollm pretrain`: shards dir → run dir with checkpoints, metrics, loss plot and a report.

    run_dir/
      manifest.json      kind "run", stage "pretrain"
      config.yaml        the resolved PretrainConfig (defaults < YAML < overrides)
      metrics.jsonl      one line per logged step / evaluation
      loss.png           train and validation loss curves
      report.md          what was trained, how fast, how well, and samples
      checkpoints/step-N/ (see zerollm.train.checkpoint)

Runs unchanged under `torchrun --nproc_per_node=N`: each rank reads its slice of every global batch.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zerollm.artifacts import atomic_write_text, read_manifest, write_manifest
from zerollm.config import PRESETS, load_config, model_config_from_preset, to_yaml
from zerollm.train.loop import TrainConfig, train
from zerollm.train.objectives import LMObjective, evaluate_lm


@dataclass
class PretrainConfig:
    data: str = ""  # shards directory from `zerollm data prepare`
    out: str = "runs/pretrain"
    preset: str = "gpt-1m"
    model: dict = field(default_factory=dict)  # ModelConfig field overrides, e.g. {"n_layer": 6}
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False  # continue from the latest checkpoint in `out`
    sample_prompts: list = field(default_factory=lambda: ["The ", "In Python, "])
    sample_tokens: int = 80


def build_model_config(cfg: PretrainConfig, vocab_size: int):
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; known: {', '.join(PRESETS)}")
    overrides = {"vocab_size": vocab_size, **cfg.model}
    overrides.setdefault("max_seq_len", max(cfg.train.seq_len, PRESETS[cfg.preset].get("max_seq_len", 0)))
    return model_config_from_preset(cfg.preset, **overrides)


def latest_checkpoint(run_dir: Path) -> Path | None:
    from zerollm.train.checkpoint import resolve_checkpoint

    try:
        return resolve_checkpoint(run_dir)
    except FileNotFoundError:
        return None


def samples_text(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int = 0) -> list[str]:
    """One sampled continuation per prompt, the prompts batched through the Engine (each seeded `seed`, so a
    prompt's sample is what it would be alone)."""
    from zerollm.engine.engine import Engine
    from zerollm.engine.generate import GenerationConfig

    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, seed=seed,
                           stop_token_ids=[tokenizer.eos_id] if tokenizer.eos_id is not None else [])
    engine = Engine(model, tokenizer, max_batch_size=max(1, min(8, len(prompts))))
    outs = engine.generate([tokenizer.encode(p) for p in prompts], gen)
    return [p + tokenizer.decode(o[0].token_ids) for p, o in zip(prompts, outs)]


def pretrain(cfg: PretrainConfig | str | None = None, overrides: list[str] | dict | None = None,
             quiet: bool = False) -> dict:
    """Train a model on a shards directory. `cfg` may be a PretrainConfig or a YAML path."""
    from zerollm.data.loader import TokenLoader
    from zerollm.model.transformer import Transformer
    from zerollm.tokenizer.base import load_tokenizer
    from zerollm.train.distributed import cleanup, init_distributed

    if not isinstance(cfg, PretrainConfig):
        cfg = load_config(PretrainConfig, cfg, overrides)
    elif overrides:
        cfg = load_config(PretrainConfig, None, overrides, base=cfg)
    if not cfg.data:
        raise ValueError("pretrain: no data given (set data=SHARDS_DIR or --data)")
    tc = cfg.train
    info = init_distributed(tc.device)
    shards = read_manifest(cfg.data, "shards")
    tokenizer = load_tokenizer(Path(cfg.data) / "tokenizer")
    if shards.get("tokenizer_hash") and shards["tokenizer_hash"] != tokenizer.hash:
        raise ValueError(f"{cfg.data}: shards were made with tokenizer {shards['tokenizer_hash'][:12]}, "
                         f"but {cfg.data}/tokenizer is {tokenizer.hash[:12]}")
    model_cfg = build_model_config(cfg, tokenizer.vocab_size)
    run_dir = Path(cfg.out)
    resume_from = latest_checkpoint(run_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        raise FileNotFoundError(f"--resume: no checkpoint found in {run_dir}/checkpoints")

    torch.manual_seed(tc.seed)
    model = Transformer(model_cfg).to(info.device)
    loader = TokenLoader(cfg.data, split="train", batch_size=tc.batch_size, seq_len=tc.seq_len, seed=tc.seed,
                         rank=info.rank, world_size=info.world_size)
    val_loader = TokenLoader(cfg.data, split="val", batch_size=tc.batch_size, seq_len=tc.seq_len,
                             seed=tc.seed, mode="sequential")
    bytes_per_token = val_loader.bytes_per_token

    def evaluate(m: torch.nn.Module) -> dict:
        return evaluate_lm(m, val_loader.iter_eval_batches(tc.eval_batches), bytes_per_token)

    config_yaml = to_yaml(cfg)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config_yaml)
        write_manifest(run_dir, "run", stage="pretrain", data=str(cfg.data), model=model_cfg.to_dict())
        if not quiet:
            print(f"model: {model.describe()}")
            print(f"FLOPs per token (fwd+bwd, T={tc.seq_len}): {model.flops_per_token(tc.seq_len) / 1e6:.2f} M")

    before = samples_text(model, tokenizer, cfg.sample_prompts, cfg.sample_tokens) if (
        info.is_main and cfg.sample_tokens and resume_from is None) else []
    summary = train(model, LMObjective(), loader, tc, run_dir, model_cfg=model_cfg, tokenizer=tokenizer,
                    evaluate=evaluate, resume_from=resume_from, config_yaml=config_yaml, dist_info=info)
    if info.is_main:
        after = samples_text(model, tokenizer, cfg.sample_prompts, cfg.sample_tokens) if cfg.sample_tokens else []
        summary.update(samples_before=before, samples_after=after, run_dir=str(run_dir),
                       model=model.describe(), n_params=model.num_params())
        finish_run_report(run_dir, "pretrain", model, model_cfg, tc, summary, shards)
    cleanup(info)
    return summary


def finish_run_report(run_dir: Path, stage: str, model, model_cfg, tc: TrainConfig, summary: dict,
                      shards: dict | None = None, extra_sections: list[tuple[str, str]] | None = None) -> None:
    from zerollm.train.report import eval_lines, fmt_num, plot_losses, write_report

    cfg = model.cfg
    plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png",
                title=f"{stage}: {fmt_num(model.num_params())} params, {cfg.n_layer} layers x {cfg.d_model}")
    evals = summary.get("evals") or []
    lines = [
        f"- model: {model.describe()}",
        f"- parameters: {fmt_num(model.num_params())} ({fmt_num(model.num_params(non_embedding=True))} non-embedding)",
        f"- steps: {summary['steps']} of {summary['total_steps']}, tokens seen: {fmt_num(summary['tokens_seen'])}",
        f"- wall time: {summary['elapsed_s']:.1f} s, median throughput: {summary['median_tok_per_s']:,.0f} tokens/s",
        f"- FLOPs/token: {summary['flops_per_token'] / 1e6:.2f} M; MFU vs {summary['peak_flops'] / 1e9:.0f} GFLOP/s peak: "
        f"{summary['median_tok_per_s'] * summary['flops_per_token'] / max(1.0, summary['peak_flops']):.1%}",
        f"- final train loss: {summary['final_loss']:.4f}",
    ]
    lines += eval_lines(evals)  # only the metrics this stage evaluated (no NaN validation loss for RL/DPO)
    if summary.get("checkpoint"):
        lines.append(f"- checkpoint: `{Path(summary['checkpoint']).relative_to(run_dir)}`")
    sections = [("Result", "\n".join(lines)), ("Loss curve", "![loss](loss.png)")]
    if shards:
        totals = shards.get("totals", {})
        sections.append(("Data", "\n".join(f"- {k}: {v}" for k, v in totals.items())))
    for title, key in (("Samples before training", "samples_before"), ("Samples after training", "samples_after")):
        if summary.get(key):
            sections.append((title, "\n\n".join("```text\n" + s.replace("```", "`\u200b``") + "\n```"
                                                for s in summary[key])))
    sections.append(("Training config", "```yaml\n" + json.dumps(dataclasses.asdict(tc), indent=1) + "\n```"))
    sections.append(("Reproduce", f"`zerollm {stage} --config {run_dir / 'config.yaml'}`"))
    write_report(run_dir / "report.md", f"zerollm {stage} run", sections + (extra_sections or []))
