"""The report card (nanochat-style): one table and one chart across a chain of runs, e.g.
quickstart → SFT → DPO, built from what the runs already wrote; nothing is re-run.

Per run directory it reads:
    manifest.json         the stage (kind "run": pretrain/sft/dpo/translate/...; kind "eval": a `zerollm eval`
                          dir; a quantized checkpoint: stage "quantize", its scheme and "elapsed_s")
    metrics.jsonl         tokens seen and wall time (the last training line's "tokens" and "elapsed_s")
    eval.json             the stage's own evaluation (train.eval_tasks=..., quantize --eval-tasks, translate's
                          test BLEU/chrF), else eval/results.json, else the results.json of an eval directory
    tokenizer             vocabulary size (the run's checkpoint tokenizer); bytes per token from a bpb task

Rows are quantities (tokenizer, wall time, tokens, bits per byte, each task metric), columns the runs; the
metric rows are the union over the runs (acc, bits per byte, BLEU, ...), a run without one shows "–".
"""
from __future__ import annotations

import json
from pathlib import Path

from zerollm.artifacts import atomic_write_text, pyplot, save_figure


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _vocab_size(run: Path) -> int | None:
    for d in (run / "model" / "tokenizer", run / "tokenizer"):
        m = _read_json(d / "manifest.json")
        if m and "vocab_size" in m:
            return int(m["vocab_size"]) + len(m.get("special_tokens", {}))
    ckpts = sorted((run / "checkpoints").glob("step-*/tokenizer/manifest.json"))
    m = _read_json(ckpts[-1]) if ckpts else None
    return int(m["vocab_size"]) + len(m.get("special_tokens", {})) if m and "vocab_size" in m else None


def gather(run: str | Path) -> dict:
    """One column of the card: {"name", "stage", "tokens", "wall_s", "vocab", "metrics": {row: value}}."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run directory")
    manifest = _read_json(run / "manifest.json") or {}
    stage = manifest.get("stage") or manifest.get("kind") or "?"
    if manifest.get("quantization"):  # a quantized checkpoint (stages/quantize.py)
        stage = f"{stage} {manifest['quantization']}"
    tokens, wall = None, manifest.get("elapsed_s")  # a stage without metrics.jsonl may record its wall time
    metrics_path = run / "metrics.jsonl"
    if metrics_path.is_file():
        for line in metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            tokens = rec.get("tokens", tokens)
            wall = rec.get("elapsed_s", wall)
    if tokens is None:  # no training line logged (a very short run): the last checkpoint says
        ckpts = sorted((run / "checkpoints").glob("step-*/manifest.json"))
        tokens = (_read_json(ckpts[-1]) or {}).get("tokens_seen") if ckpts else None
    evals = None
    for cand in (run / "eval.json", run / "eval" / "results.json", run / "results.json"):
        evals = _read_json(cand)
        if evals is not None:
            break
    if evals is None and not metrics_path.is_file():
        raise FileNotFoundError(f"{run}: neither a run (metrics.jsonl) nor evaluated (eval.json, "
                                f"eval/results.json)")
    metrics = {}
    for task, res in (evals or {}).items():
        for name, m in res.get("metrics", {}).items():
            metrics[f"{task} {name}"] = m.get("value")
    return {"name": run.name, "stage": stage, "tokens": tokens, "wall_s": wall, "vocab": _vocab_size(run),
            "metrics": metrics}


def _cell(v, fmt: str = "{:.4f}") -> str:
    return "–" if v is None else fmt.format(v)


def card_markdown(cols: list[dict]) -> str:
    head = "| | " + " | ".join(f"{c['name']} ({c['stage']})" for c in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]
    lines.append("| tokenizer vocab | " + " | ".join(_cell(c["vocab"], "{:,}") for c in cols) + " |")
    lines.append("| wall time (s) | " + " | ".join(_cell(c["wall_s"], "{:,.1f}") for c in cols) + " |")
    lines.append("| tokens seen | " + " | ".join(_cell(c["tokens"], "{:,}") for c in cols) + " |")
    rows = list(dict.fromkeys(k for c in cols for k in c["metrics"]))
    rows.sort(key=lambda k: (not k.startswith("bpb"), k))  # bits per byte first, then tasks
    for k in rows:
        lines.append(f"| {k} | " + " | ".join(_cell(c["metrics"].get(k)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def card_png(cols: list[dict], png: Path) -> Path | None:
    """One panel per task metric (bits per byte: lower is better), a bar per run."""
    plt = pyplot()

    rows = list(dict.fromkeys(k for c in cols for k in c["metrics"] if not k.endswith("bytes_per_token")))
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(max(3.2 * len(rows), 4), 3.4), dpi=100, squeeze=False)
    names = [f"{c['name']}\n({c['stage']})" for c in cols]
    for ax, k in zip(axes[0], rows):
        vals = [c["metrics"].get(k) or 0.0 for c in cols]
        ax.bar(range(len(cols)), vals, color=[f"C{i}" for i in range(len(cols))])
        ax.set_xticks(range(len(cols)), names, fontsize=7)
        ax.set_title(k + (" (↓)" if "bits_per_byte" in k else ""), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("zerollm report card")
    fig.tight_layout()
    return save_figure(fig, png)


def report_card(runs: list[str | Path], out: str | Path) -> str:
    """Write the card (markdown) to `out` and its chart beside it (same name, .png); returns the markdown."""
    if not runs:
        raise ValueError("give at least one run directory")
    cols = [gather(r) for r in runs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = card_png(cols, out.with_suffix(".png"))
    text = "# zerollm report card\n\n" + card_markdown(cols)
    if png:
        text += f"\n![report card]({png.name})\n"
    atomic_write_text(out, text)
    return text


__all__ = ["card_markdown", "card_png", "gather", "report_card"]
