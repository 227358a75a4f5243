"""What a run leaves for a person to read: metrics JSONL, a loss-curve PNG and a markdown report.

`metrics.jsonl` has one JSON object per line: training lines `{"step", "loss", "lr", "tokens", "tok_per_s",
"mfu", "grad_norm", "elapsed_s"}` and evaluation lines `{"step", "val_loss", "val_bpb"}`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from zerollm.artifacts import atomic_write_text, pyplot, save_figure


class MetricsLog:
    """Append-only JSONL; each line is flushed so a crash loses at most the line being written."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step (they will be produced again)."""
        if not (self.enabled and self.path.is_file()):
            return
        keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def plot_losses(metrics_path: str | Path, png_path: str | Path, title: str = "loss") -> Path | None:
    plt = pyplot()

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, png_path)


_PEAK_CACHE: dict[str, float] = {}


def peak_flops(device: torch.device) -> float:
    """Denominator for MFU. CUDA: the card's dense bf16 peak (scaling/estimate.py's table, else 312 TF). CPU/MPS: a
    fp32 matmul measured here once (so CPU MFU reads as 'fraction of what this machine's matmul does')."""
    key = str(device)
    if key in _PEAK_CACHE:
        return _PEAK_CACHE[key]
    if device.type == "cuda":
        from zerollm.scaling.estimate import PEAK_BF16_FLOPS  # the one table of accelerator peaks

        name = torch.cuda.get_device_name(device).lower()
        hits = [k for k in PEAK_BF16_FLOPS if all(part in name for part in k.split("-"))]
        peak = PEAK_BF16_FLOPS[max(hits, key=len)] if hits else 312e12
    else:
        n, best = 1024, 0.0
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        for _ in range(5):  # best of 5: the machine's matmul peak, not its current load
            t0 = time.perf_counter()
            for _ in range(4):
                a @ b
            best = max(best, 2 * n**3 * 4 / max(1e-9, time.perf_counter() - t0))
        peak = best
    _PEAK_CACHE[key] = peak
    return peak


def fmt_num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


# evaluation metrics a stage may log, in report order: key -> (label, format); others are listed after them
EVAL_METRICS = {
    "val_loss": ("validation loss", "{:.4f}"),
    "val_bpb": ("validation bits per byte", "{:.3f}"),
    "exact_match": ("held-out exact match", "{:.1%}"),
    "pair_accuracy": ("held-out pairwise accuracy", "{:.1%}"),
    "margin": ("held-out mean margin", "{:.3f}"),
    "val_score": ("held-out reward-model score", "{:.3f}"),
    "val_kl": ("held-out KL to the reference (nats/sequence)", "{:.3f}"),
    "val_property": ("held-out property score", "{:.3f}"),
}


def eval_lines(evals: list[dict]) -> list[str]:
    """Markdown lines "- label: first (step a) → **last** (step b)" for every metric the evaluations
    actually logged; a metric the stage does not have (val_loss of a reward model, say) or that was not a
    finite number is left out rather than printed as NaN."""
    keys = [k for k in EVAL_METRICS if any(k in e for e in evals)]
    keys += sorted({k for e in evals for k in e if k not in EVAL_METRICS and k not in ("step", "elapsed_s")})
    lines = []
    for key in keys:
        pts = [(e.get("step"), e[key]) for e in evals
               if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
        if not pts:
            continue
        label, fmt = EVAL_METRICS.get(key, (key, "{:.4g}"))
        (s0, v0), (s1, v1) = pts[0], pts[-1]
        lines.append(f"- {label}: **{fmt.format(v1)}** (step {s1})" if len(pts) == 1 else
                     f"- {label}: {fmt.format(v0)} (step {s0}) → **{fmt.format(v1)}** (step {s1})")
    return lines


def write_report(path: str | Path, title: str, sections: list[tuple[str, str]]) -> None:
    body = [f"# {title}\n"]
    for heading, text in sections:
        body.append(f"## {heading}\n\n{text.rstrip()}\n")
    atomic_write_text(path, "\n".join(body))
