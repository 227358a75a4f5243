"""A scaling sweep: many small models, each trained to its own token budget, one JSONL row per point.

    sweep_dir/
      manifest.json      kind "scaling-sweep": the data and the settings every point shares
      points.jsonl       one row per finished point (val loss, bits/byte, params, FLOPs, tokens, wall time)
      points/<name>/     each point's run directory (metrics.jsonl, checkpoints/ for resuming a killed point)

Two plans (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"):
  - grid: every size x every token budget (approach 3 fits L(N, D) to such points);
  - isoflop: at each compute budget C, every size N trained on D = C / (FLOPs per token of N) tokens
    (approach 2: the loss minimum along each IsoFLOP curve gives N_opt(C)).
Sizes follow one rule (nanochat's): depth L → width d_model = aspect x L, heads of `head_dim` each.

Every point is trained by the one training loop (train/loop.py) with LMObjective, as `pretrain` does, and its
cosine schedule ends exactly at the point's own token budget: Chinchilla §3.1 / fig. A1 show that a schedule
longer than the run overestimates the loss of short runs and biases the fit.

Resuming: a point with a row in points.jsonl is skipped; a point whose run was killed continues from its last
checkpoint (exact resume, train/checkpoint.py); a partly written last row is ignored. With `workers` > 1 the
points run in that many processes (each on its own GPU when there are several), rows written by the parent.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zerollm.artifacts import artifact_kind, read_manifest, write_manifest
from zerollm.config import ModelConfig, model_config_from_preset
from zerollm.scaling.estimate import parse_count, size_from_config

ROWS = "points.jsonl"


@dataclass
class SweepConfig:
    data: str = field(default="", metadata={"required": True, "help": "shards directory (zerollm data prepare)"})
    out: str = field(default="", metadata={"required": True, "help": "sweep directory (resumable)"})
    plan: str = field(default="isoflop", metadata={"choices": ("isoflop", "grid")})
    depths: list = field(default_factory=lambda: [1, 2, 3, 4],
                         metadata={"help": "model depths (repeatable; default 1 2 3 4); width = aspect x depth"})
    aspect: int = field(default=32, metadata={"help": "d_model per layer of depth (nanochat uses 64)"})
    head_dim: int = 32
    preset: str = field(default="quickstart", metadata={"help": "architecture the sizes share (config.PRESETS)"})
    flops: list = field(default_factory=list, metadata={"help": "isoflop: compute budgets, e.g. 3e12 (repeatable)"})
    tokens: list = field(default_factory=list, metadata={"help": "grid: token budgets, e.g. 2M (repeatable)"})
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 20
    min_steps: int = 20  # points that get fewer optimizer steps are left out of the plan (too short to fit)
    eval_batches: int = 20
    ckpt_every: int = 100  # a killed point resumes from its last checkpoint
    workers: int = field(default=1, metadata={"help": "points trained in parallel (processes)"})
    threads: int = field(default=1, metadata={"help": "torch threads per worker"})
    device: str = "auto"
    seed: int = 1337
    max_points: int = field(default=0, metadata={"help": "stop after this many new points (0: all)"})
    overwrite: bool = field(default=False, metadata={"help": "--out holds a sweep with other settings: move it aside"})


@dataclass
class Point:
    name: str
    depth: int
    tokens: int  # whole optimizer steps' worth: steps x batch x seq_len
    steps: int
    compute_budget: float | None  # the IsoFLOP budget this point belongs to (None on a grid)


def model_config(cfg: SweepConfig, depth: int, vocab_size: int) -> ModelConfig:
    """The size rule: depth → d_model = aspect·depth, n_head = d_model / head_dim (all heads their own KV)."""
    d = cfg.aspect * depth
    if d % cfg.head_dim:
        raise ValueError(f"aspect x depth = {d} is not a multiple of head_dim {cfg.head_dim}")
    n_head = d // cfg.head_dim
    return model_config_from_preset(cfg.preset, n_layer=depth, d_model=d, n_head=n_head, n_kv_head=n_head,
                                    head_dim=cfg.head_dim, vocab_size=vocab_size, max_seq_len=cfg.seq_len)


def plan(cfg: SweepConfig, vocab_size: int) -> tuple[list[Point], list[str]]:
    """The points of the sweep, and a note per point left out (too few steps)."""
    try:
        depths = [int(d) for d in cfg.depths] or [1, 2, 3, 4]
    except ValueError:
        raise ValueError(f"depths must be positive integers, got {cfg.depths}") from None
    if min(depths) < 1:
        raise ValueError(f"depths must be positive integers, got {cfg.depths}")
    per_step = cfg.batch_size * cfg.seq_len
    points, skipped = [], []
    if cfg.plan == "grid":
        if not cfg.tokens:
            raise ValueError("plan grid needs token budgets: --tokens 1M --tokens 2M ...")
        budgets = [(None, parse_count(t, "token budget")) for t in cfg.tokens]
    elif cfg.plan == "isoflop":
        if not cfg.flops:
            raise ValueError("plan isoflop needs compute budgets: --flops 1e12 --flops 3e12 ...")
        budgets = [(float(parse_count(c, "compute budget")), None) for c in cfg.flops]
    else:
        raise ValueError(f"unknown plan {cfg.plan!r}; expected isoflop or grid")
    for C, tokens in budgets:
        for depth in depths:
            fpt = size_from_config(model_config(cfg, depth, vocab_size), seq_len=cfg.seq_len).flops_per_token()
            want = tokens if tokens is not None else C / fpt
            steps = max(1, round(want / per_step))
            name = f"d{depth}-" + (f"C{C:.2e}" if C is not None else f"D{steps * per_step}")
            if steps < cfg.min_steps:
                skipped.append(f"{name}: {steps} steps < min_steps {cfg.min_steps}")
                continue
            points.append(Point(name.replace("+", ""), depth, steps * per_step, steps, C))
    return points, skipped


# ---- one point --------------------------------------------------------------------------------------------

def train_point(cfg: SweepConfig, point: Point, device: str | None = None, progress: bool = False) -> dict:
    """Train one point through the one training loop and return its row (resumes a killed run)."""
    from zerollm.data.loader import TokenLoader
    from zerollm.model.transformer import Transformer
    from zerollm.objectives import LMObjective, evaluate_lm
    from zerollm.rundir import start_run
    from zerollm.runtime import pick_device
    from zerollm.tokenizer.base import load_tokenizer
    from zerollm.train.loop import TrainConfig, train

    torch.set_num_threads(max(1, cfg.threads))
    dev = pick_device(device or cfg.device)
    tokenizer = load_tokenizer(Path(cfg.data) / "tokenizer")
    mcfg = model_config(cfg, point.depth, tokenizer.vocab_size)
    tc = TrainConfig(steps=point.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr,
                     warmup_steps=min(cfg.warmup_steps, point.steps // 5), schedule="cosine", min_lr_ratio=0.1,
                     eval_every=0, eval_at_start=False, ckpt_every=cfg.ckpt_every, keep_last=1,
                     log_every=max(1, point.steps // 20), seed=cfg.seed, device=str(dev), progress=progress)
    run_dir = Path(cfg.out) / "points" / point.name
    from zerollm.loading import latest_checkpoint

    resume = latest_checkpoint(run_dir) is not None
    run = start_run(run_dir, "scaling-point", tc, resume=resume, overwrite=not resume,
                    data=str(cfg.data), model=mcfg.to_dict(), point=dataclasses.asdict(point))
    torch.manual_seed(cfg.seed)
    model = Transformer(mcfg).to(dev)
    loader = TokenLoader(cfg.data, split="train", batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed)
    val = TokenLoader(cfg.data, split="val", batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed,
                      mode="sequential")
    t0 = time.perf_counter()
    summary = train(model, LMObjective(), loader, tc, run.dir, model_cfg=mcfg, tokenizer=tokenizer,
                    resume_from=run.resume_from, config_yaml=run.config_yaml)
    ev = evaluate_lm(model, val.iter_eval_batches(cfg.eval_batches), val.bytes_per_token)
    size = size_from_config(mcfg, seq_len=cfg.seq_len)
    return {"name": point.name, "depth": point.depth, "n_layer": mcfg.n_layer, "d_model": mcfg.d_model,
            "n_head": mcfg.n_head, "params": size.params, "params_non_embedding": size.params_non_embedding,
            "params_matmul": size.params_matmul, "tokens": point.tokens, "steps": point.steps,
            "flops": size.flops_per_token() * point.tokens, "flops_6nd": 6.0 * size.params_matmul * point.tokens,
            "compute_budget": point.compute_budget, "val_loss": ev["val_loss"], "val_bpb": ev.get("val_bpb"),
            "train_loss": summary["final_loss"], "wall_s": round(time.perf_counter() - t0, 2),
            "resumed_from_step": int(run.resume_from.name.split("-")[-1]) if run.resume_from else 0,
            "tok_per_s": round(summary["median_tok_per_s"], 1), "device": str(dev)}


def _worker(args: tuple) -> dict:
    cfg_dict, point_dict, device = args
    return train_point(SweepConfig(**cfg_dict), Point(**point_dict), device)


# ---- the sweep --------------------------------------------------------------------------------------------

def read_rows(sweep_dir: str | Path) -> list[dict]:
    """Finished points (last row per name wins); a partly written line (a killed write) is skipped."""
    path = Path(sweep_dir) / ROWS
    rows: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "name" in row and "val_loss" in row:
                rows[row["name"]] = row
    return list(rows.values())


def _append_row(sweep_dir: Path, row: dict) -> None:
    path = sweep_dir / ROWS
    with open(path, "a+", encoding="utf-8") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():  # a killed write may have left a line without its newline: start a fresh line
            f.seek(f.tell() - 1)
            if f.read(1) != "\n":
                f.write("\n")
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


_SHARED = ("data", "plan", "aspect", "head_dim", "preset", "batch_size", "seq_len", "lr", "warmup_steps",
           "eval_batches", "seed")


def _open_sweep(cfg: SweepConfig) -> Path:
    """Create the sweep dir, or reopen one whose shared settings match (else refuse / move it aside)."""
    from zerollm.artifacts import move_aside

    out = Path(cfg.out)
    data, target = Path(cfg.data).resolve(), out.resolve()
    if data == target or target in data.parents:
        raise ValueError(f"--data {cfg.data} lies inside --out {out}: choose another --out")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):  # an empty directory is simply used
        if artifact_kind(out) == "scaling-sweep":
            old = read_manifest(out, "scaling-sweep").get("settings", {})
            diff = [k for k in _SHARED if k in old and old[k] != getattr(cfg, k)]
            if not diff:
                return out
            if not cfg.overwrite:
                raise ValueError(f"{out} holds a sweep with other settings ({', '.join(diff)}); choose another "
                                 f"--out, or --overwrite to move it aside")
        elif not cfg.overwrite:
            raise FileExistsError(f"{out} exists and is not a scaling sweep: choose another --out, or "
                                  f"--overwrite to move it aside")
        print(f"scaling sweep: moved {out} aside to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, "scaling-sweep", settings={k: getattr(cfg, k) for k in _SHARED})
    return out


def run_sweep(cfg: SweepConfig, progress: bool = True) -> list[dict]:
    """Train every point of the plan not yet in points.jsonl; returns all rows."""
    read_manifest(cfg.data, "shards")
    from zerollm.tokenizer.base import load_tokenizer

    if cfg.workers < 1:
        raise ValueError(f"workers must be at least 1, got {cfg.workers}")
    vocab = load_tokenizer(Path(cfg.data) / "tokenizer").vocab_size
    points, skipped = plan(cfg, vocab)
    if not points:
        raise ValueError("the plan has no point with at least min_steps steps: raise the budgets "
                         f"({'; '.join(skipped)})")
    out = _open_sweep(cfg)
    done = {r["name"] for r in read_rows(out)}
    todo = [p for p in points if p.name not in done]
    if cfg.max_points:
        todo = todo[:cfg.max_points]
    for note in skipped:
        print(f"scaling sweep: left out {note}")
    n_done = sum(p.name in done for p in points)
    print(f"scaling sweep: {len(points)} points, {n_done} already done, {len(todo)} to train on {cfg.workers} worker(s) → {out / ROWS}")
    total_flops = sum(size_from_config(model_config(cfg, p.depth, vocab), seq_len=cfg.seq_len).flops_per_token()
                      * p.tokens for p in todo)
    t0, flops_done = time.perf_counter(), 0.0

    def report(i: int, row: dict) -> None:
        nonlocal flops_done
        _append_row(out, row)
        flops_done += row["flops"]
        el = time.perf_counter() - t0
        eta = el * (total_flops - flops_done) / max(flops_done, 1.0)
        print(f"[{i}/{len(todo)}] {row['name']}: {row['params'] / 1e6:.2f}M params, {row['tokens'] / 1e6:.2f}M "
              f"tokens, val {row['val_loss']:.4f} ({row['val_bpb'] or float('nan'):.4f} bpb) in {row['wall_s']:.0f} s"
              + (f" (resumed at step {row['resumed_from_step']})" if row["resumed_from_step"] else "")
              + f"; ~{eta / 60:.1f} min left", flush=True)

    if cfg.workers == 1 or len(todo) <= 1:
        for i, p in enumerate(todo, 1):
            report(i, train_point(cfg, p, progress=progress))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        n_gpu = torch.cuda.device_count() if pick_cuda(cfg.device) else 0
        devices = [f"cuda:{i % n_gpu}" if n_gpu else None for i in range(len(todo))]
        cfgd = dataclasses.asdict(cfg)
        # biggest first, so the slowest points do not start last
        order = sorted(range(len(todo)), key=lambda i: -todo[i].tokens * todo[i].depth ** 2)
        with cf.ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_worker, (cfgd, dataclasses.asdict(todo[i]), devices[i])) for i in order]
            for i, fut in enumerate(cf.as_completed(futs), 1):
                report(i, fut.result())
    return read_rows(out)


def pick_cuda(device: str) -> bool:
    return torch.cuda.is_available() and device in ("auto", "cuda")


__all__ = ["SweepConfig", "Point", "plan", "model_config", "train_point", "run_sweep", "read_rows", "ROWS"]
