"""A run directory: what every training stage (pretrain, sft, reward, dpo, grpo, ppo) writes, set up one way.

    run_dir/
      manifest.json      kind "run", the stage, and what it started from
      config.yaml        the resolved stage config (defaults < YAML < overrides)
      metrics.jsonl      one line per logged step / evaluation (train/loop.py)
      loss.png           train and validation loss; <stage>.png: the stage's own figures
      report.md          what was trained, how fast, how well, and samples
      checkpoints/step-N/ (train/checkpoint.py), checkpoints/latest

`start_run` writes the config and manifest and finds the checkpoint `--resume` continues from;
`finish_report` writes the plots and the report once training is done.

A run directory holds one run. Starting a new run where one already is would mix two runs' checkpoints,
metrics and report (and pruning would delete the new run's checkpoints, whose step numbers are lower), so
it is an error unless `resume` (continue that run) or `overwrite` (move the old run aside to
`<out>.old-<time>`, atomically, and start afresh: nothing is deleted).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerollm.artifacts import atomic_write_text, move_aside, pyplot, save_figure, write_manifest
from zerollm.config import to_yaml
from zerollm.loading import latest_checkpoint
from zerollm.train.report import eval_lines, fmt_num, plot_losses, read_metrics, write_report


@dataclass
class Run:
    dir: Path
    resume_from: Path | None  # the checkpoint to continue from (with resume), else None
    config_yaml: str  # the resolved config, as written to config.yaml and into every checkpoint


def holds_run(path: Path) -> bool:
    """Whether `path` already holds a training run (its checkpoints or metrics)."""
    return path.is_dir() and ((path / "checkpoints").exists() or (path / "metrics.jsonl").exists())


def start_run(out: str | Path, stage: str, cfg: Any, *, resume: bool = False, overwrite: bool = False,
              write: bool = True, **manifest: Any) -> Run:
    """Create (or reopen, with `resume`) the run directory of `stage`. `write=False` on non-main ranks."""
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a directory; choose another --out")
    if write and not resume and holds_run(run_dir):
        if not overwrite:
            raise FileExistsError(f"{run_dir} already holds a training run: pass --resume to continue it, or "
                                  f"--overwrite to move it aside and start afresh")
        print(f"{stage}: moved the previous run aside to {move_aside(run_dir)}")
    resume_from = latest_checkpoint(run_dir) if resume else None
    if resume and resume_from is None:
        raise FileNotFoundError(f"--resume: no checkpoint found in {run_dir}/checkpoints")
    config_yaml = to_yaml(cfg)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config_yaml)
        write_manifest(run_dir, "run", stage=stage, **manifest)
    return Run(run_dir, resume_from, config_yaml)


def plot_metrics(metrics_path: Path, keys: list[str], png: Path, title: str) -> Path | None:
    """One panel per metric key present in metrics.jsonl, against step."""
    plt = pyplot()

    rows = read_metrics(metrics_path)
    series = {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), dpi=100, squeeze=False)
    for ax, (k, pts) in zip(axes[0], series.items()):
        ax.plot(*zip(*pts), "o-" if len(pts) < 30 else "-", markersize=3, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_title(k)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png)


def fenced(text: str) -> str:
    """A text block for the markdown report (a ``` inside the text cannot close the fence)."""
    return "```text\n" + text.replace("```", "`\u200b``") + "\n```"


def finish_report(run_dir: Path, stage: str, model, tc, summary: dict, shards: dict | None = None,
                  extra_sections: list[tuple[str, str]] | None = None) -> None:
    """loss.png and report.md for a finished run (`tc`: the TrainConfig it ran with)."""
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
            sections.append((title, "\n\n".join(fenced(s) for s in summary[key])))
    sections.append(("Training config", "```yaml\n" + json.dumps(dataclasses.asdict(tc), indent=1) + "\n```"))
    sections.append(("Reproduce", f"`zerollm {stage} --config {run_dir / 'config.yaml'}`"))
    if getattr(tc, "eval_tasks", ""):  # the stage evaluates its result (eval/; `zerollm report` reads eval.json)
        from zerollm.eval import evaluate_run

        sections.append(("Evaluation", evaluate_run(run_dir, tc.eval_tasks, tc.eval_limit)))
    write_report(run_dir / "report.md", f"zerollm {stage} run", sections + (extra_sections or []))


__all__ = ["Run", "start_run", "holds_run", "finish_report", "plot_metrics", "fenced"]
