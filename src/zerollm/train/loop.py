"""The one training loop.

Pretraining, SFT, reward modelling, DPO and RL differ only in their `Objective` (zerollm.objectives) and
their batch source; everything else lives here once:

    for each optimizer step:
        lr ← schedule(step)
        for each of `grad_accum` micro-batches:            (DDP/FSDP sync gradients only on the last one)
            loss ← objective.loss(model, batch)            (bf16 autocast on CUDA; fp32 on CPU)
            (loss / grad_accum).backward()
        clip ‖g‖ to grad_clip; AdamW step
        log (loss, lr, tokens/s, MFU) → metrics.jsonl + progress bar
        every eval_every: validation → metrics.jsonl
        every ckpt_every: checkpoint (weights, optimizer, RNG, data position) → exact resume

A batch source is any object with `next_batch() -> tuple[Tensor, ...]`, `state_dict()` and
`load_state_dict()`; the first tensor's numel is the token count used for throughput.

Time budgets (`max_minutes`): after a short calibration the loop fixes the number of steps that fits the
budget (so the cosine/WSD schedule still ends at its floor), and stores it in the checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from zerollm.artifacts import remove_stale_tmp
from zerollm.errors import ConfigError, ZeroLLMError, check_range
from zerollm.runtime import ThreadPicker
from zerollm.train.checkpoint import (
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
    save_sharded_checkpoint,
)
from zerollm.train.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
)
from zerollm.train.optim import build_adamw
from zerollm.train.parallel import PARALLEL_MODES, full_model, wrap
from zerollm.train.report import MetricsLog, peak_flops
from zerollm.train.schedule import SCHEDULES, lr_at


class TrainingDiverged(ZeroLLMError):
    """The loss became inf/nan: the message says at which step and with which learning rate."""


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps (an upper bound when max_minutes is set)
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1
    seq_len: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | wsd | constant
    decay_fraction: float = 0.2  # wsd: share of steps spent decaying
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 200
    eval_batches: int = 20
    eval_at_start: bool = True
    ckpt_every: int = 500  # 0 = only at the end; -1 = never (benchmarks)
    keep_last: int = 2
    log_every: int = 10
    seed: int = 1337
    compile: bool = False
    device: str = "auto"
    max_minutes: float = 0.0  # 0 = no time budget
    progress: bool = True
    # under torchrun (train/parallel.py, docs/distributed.md): ddp | fsdp | auto (fsdp when it does not fit)
    parallel: str = "ddp"
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    cpu_offload: bool = False  # fsdp: shards and optimizer state in host memory
    dist_timeout_s: float = 600.0  # a collective waiting this long (a rank died or hung) ends the job
    eval_tasks: str = ""  # after training: `zerollm eval` tasks on the result → run_dir/eval.json (report card)
    eval_limit: int = 200  # items per task of that evaluation

    def __post_init__(self) -> None:  # nonsense fails here, where the config is parsed (issue 18)
        for name in ("steps", "batch_size", "grad_accum", "seq_len", "eval_batches", "keep_last", "log_every"):
            check_range(f"train.{name}", getattr(self, name), 1, integer=True)
        for name in ("warmup_steps", "eval_every"):
            check_range(f"train.{name}", getattr(self, name), 0, integer=True)
        check_range("train.ckpt_every", self.ckpt_every, -1, integer=True)
        check_range("train.lr", self.lr, 0)
        for name in ("min_lr_ratio", "decay_fraction", "beta1", "beta2"):
            check_range(f"train.{name}", getattr(self, name), 0, 1)
        for name in ("weight_decay", "grad_clip", "max_minutes"):
            check_range(f"train.{name}", getattr(self, name), 0)
        if self.parallel not in PARALLEL_MODES:  # before any run directory is written
            raise ConfigError(f"train.parallel={self.parallel!r}: expected one of {', '.join(PARALLEL_MODES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}")



def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # this CPU has no fast bf16: fp32


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(model: torch.nn.Module, objective: Any, data: Any, cfg: TrainConfig, run_dir: str | Path, *,
          model_cfg: Any, tokenizer: Any = None, chat_template: str | None = None,
          evaluate: Callable[[torch.nn.Module], dict] | None = None,
          resume_from: str | Path | None = None, config_yaml: str | None = None,
          dist_info: DistInfo | None = None, tokens_per_batch: int | None = None,
          src_tokenizer: Any = None) -> dict:
    """Train `model` in place; returns a summary dict. `model` must already be on the target device.
    Checkpoints carry `tokenizer` and the model's own `chat_template` (None: zerollm's ChatML), and an
    encoder-decoder's `src_tokenizer` when it has one per side."""
    info = dist_info or DistInfo(device=next(model.parameters()).device)
    device = info.device
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
    if info.is_main:  # what a kill -9 mid-save left: temporary checkpoint dirs and files (issue 18)
        remove_stale_tmp(ckpt_root, "step-*")
        remove_stale_tmp(run_dir, "*")
    log = MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main)

    wrapped = wrap(model, cfg, info)  # DDP / FSDP2 / one process; FSDP shards in place, before the optimizer
    base, train_model = wrapped.base, wrapped.model
    opt = build_adamw(base, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2))
    start_step, tokens_seen, total_steps = 0, 0, cfg.steps
    calibrated = cfg.max_minutes <= 0
    if resume_from is not None:
        state = restore_checkpoint(resume_from, base, opt)  # any checkpoint format into any wrapping
        ranks = state.get("ranks")  # each rank's own data position and RNG when the world size is unchanged
        mine = ranks[info.rank] if ranks and len(ranks) == info.world_size else state
        data.load_state_dict(mine["data"])
        _set_rng_state(mine["rng"], device)
        start_step, tokens_seen = int(state["step"]), int(state["tokens_seen"])
        total_steps, calibrated = int(state["total_steps"]), True
        log.truncate_after(start_step)
    else:
        torch.manual_seed(cfg.seed + info.rank)
    # tokens a batch counts for (throughput, MFU): the objective's own count when it has one (translation:
    # real source + target tokens), else the first tensor's positions
    count_tokens = getattr(objective, "batch_tokens", None) or (lambda batch: batch[0].numel())
    threads = ThreadPicker.for_run(device, state.get("threads") if resume_from is not None else None)


    flops_per_token = base.flops_per_token(cfg.seq_len) if hasattr(base, "flops_per_token") else 0.0
    peak = peak_flops(device) if flops_per_token else 0.0
    t_start = time.perf_counter()
    budget_s = cfg.max_minutes * 60.0
    t_calib = t_start

    def run_eval(step: int) -> dict:
        if evaluate is None:
            return {}
        result = evaluate(full_model(train_model))  # FSDP: a gathered copy (decoding needs whole weights)
        if result:
            log.write({"step": step, **result, "elapsed_s": round(time.perf_counter() - t_start, 2)})
        return result

    def checkpoint(step: int) -> Path | None:
        path = None
        ranks = all_gather_objects({"data": data.state_dict(), "rng": _rng_state(device)}, info)
        state = {**ranks[0], "ranks": ranks if info.enabled else None, "step": step, "tokens_seen": tokens_seen,
                 "total_steps": total_steps, "threads": threads.candidate() if threads else None}
        if wrapped.kind == "fsdp":
            path = save_sharded_checkpoint(ckpt_root / f"step-{step:08d}", base, opt, model_cfg, is_main=info.is_main,
                                           tokenizer=tokenizer, chat_template=chat_template, trainer_state=state,
                                           config_yaml=config_yaml, step=step, tokens_seen=tokens_seen,
                                           world_size=info.world_size, src_tokenizer=src_tokenizer)
        elif info.is_main:
            state["optimizer"] = opt.state_dict()
            path = save_checkpoint(ckpt_root / f"step-{step:08d}", base, model_cfg, tokenizer=tokenizer,
                                   chat_template=chat_template, trainer_state=state, config_yaml=config_yaml, step=step,
                                   tokens_seen=tokens_seen, src_tokenizer=src_tokenizer)
        if info.is_main:
            prune_checkpoints(ckpt_root, cfg.keep_last)
        barrier(info)
        return path

    bar = None
    if cfg.progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    evals: list[dict] = []
    if start_step == 0 and cfg.eval_at_start:
        ev = run_eval(0)
        if ev:
            evals.append({"step": 0, **ev})
    model.train()
    last_ckpt: Path | None = None
    window_tokens, window_t0 = 0, time.perf_counter()
    tok_rates: list[float] = []
    step = start_step
    loss_value = float("nan")
    while step < total_steps:
        if threads:
            threads.before_step()
        t_step = time.perf_counter()
        lr = lr_at(step, peak=cfg.lr, total_steps=total_steps, warmup_steps=cfg.warmup_steps,
                   schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio, decay_fraction=cfg.decay_fraction)
        for group in opt.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        metric_sums: dict[str, float] = {}
        step_tokens = 0
        for micro in range(cfg.grad_accum):
            batch = tuple(t.to(device, non_blocking=True) for t in data.next_batch())
            step_tokens += tokens_per_batch or count_tokens(batch)
            with wrapped.sync(micro == cfg.grad_accum - 1), _autocast(device):
                loss, metrics = objective.loss(train_model, batch)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + float(v)
        grad_norm = wrapped.clip_grad_norm(cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if threads:
            threads.after_step(time.perf_counter() - t_step)
        step += 1
        tokens_seen += step_tokens * info.world_size
        window_tokens += step_tokens * info.world_size

        if budget_s and step == 5:
            t_calib = time.perf_counter()
        # Time budget: fix the step count from the measured step time (steps 5..25, after warm-up effects),
        # spending what is left of the budget less the evaluations still to come. Under WSD the count is
        # re-estimated every 25 steps during the stable phase (the lr there does not depend on it), so a
        # machine that speeds up or slows down mid-run still ends its decay on time. All ranks agree.
        stable = cfg.schedule == "wsd" and step < (1 - cfg.decay_fraction) * total_steps - 25
        if budget_s and step > 5 and ((not calibrated and step >= min(25, total_steps))
                                      or (calibrated and stable and step % 25 == 0 and resume_from is None)):
            per_step = (time.perf_counter() - t_calib) / (step - 5)
            remaining = budget_s - (time.perf_counter() - t_start)
            n_evals = max(1, int(remaining / per_step) // max(1, cfg.eval_every or 10**9) + 1)
            eval_cost = n_evals * cfg.eval_batches * per_step / (3 * cfg.grad_accum)
            fit = step + int((remaining - eval_cost) / per_step)
            t = torch.tensor([max(step, min(cfg.steps, fit))], device=device)
            if info.enabled:
                torch.distributed.broadcast(t, 0)
            total_steps, calibrated = int(t.item()), True
            if bar is not None:
                bar.total = total_steps
                bar.refresh()

        if step % cfg.log_every == 0 or step == total_steps:
            loss_value = float(all_reduce_mean(loss_sum / cfg.grad_accum, info))
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"training diverged: the loss became {loss_value} at step {step} "
                                       f"(train.lr={cfg.lr:g}); lower train.lr or check the data")
            dt = time.perf_counter() - window_t0
            rate = window_tokens / max(dt, 1e-9)
            tok_rates.append(rate)
            mfu = rate * flops_per_token / peak if peak else 0.0
            record = {"step": step, "loss": round(loss_value, 5), "lr": lr, "tokens": tokens_seen,
                      "tok_per_s": round(rate, 1), "mfu": round(mfu, 4), "grad_norm": round(float(grad_norm), 4),
                      "elapsed_s": round(time.perf_counter() - t_start, 2)}
            means = all_reduce_mean(torch.tensor(list(metric_sums.values()), dtype=torch.float64,
                                                device=device if device.type == "cuda" else "cpu"), info)
            record.update({k: round(float(v) / cfg.grad_accum, 5) for k, v in zip(metric_sums, means)})  # all ranks
            log.write(record)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:,.0f}", mfu=f"{mfu:.1%}", lr=f"{lr:.2e}")
            window_tokens, window_t0 = 0, time.perf_counter()
        if bar is not None:
            bar.update(1)

        last = step == total_steps
        if cfg.eval_every and (step % cfg.eval_every == 0 or last):
            ev = run_eval(step)
            if ev:
                evals.append({"step": step, **ev})
                if bar is not None:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in ev.items()))
        if cfg.ckpt_every >= 0 and ((cfg.ckpt_every and step % cfg.ckpt_every == 0) or last):
            last_ckpt = checkpoint(step) or last_ckpt
        if budget_s and time.perf_counter() - t_start > budget_s * 1.15 and not last:
            # Hard stop: far over budget (e.g. the machine got busy). Save what we have.
            if evaluate is not None and cfg.eval_every:
                ev = run_eval(step)
                if ev:
                    evals.append({"step": step, **ev})
            last_ckpt = checkpoint(step) or last_ckpt
            break
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    rates = sorted(tok_rates[1:] or tok_rates)
    return {"steps": step, "total_steps": total_steps, "tokens_seen": tokens_seen, "elapsed_s": elapsed,
            "final_loss": loss_value, "evals": evals, "checkpoint": str(last_ckpt) if last_ckpt else None,
            "median_tok_per_s": rates[len(rates) // 2] if rates else 0.0,
            "flops_per_token": flops_per_token, "peak_flops": peak}
