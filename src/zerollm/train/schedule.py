"""Learning-rate schedules, as pure functions of the optimizer step.

- "cosine": linear warmup to the peak, then cosine decay to `min_lr_ratio * peak` (Loshchilov & Hutter 2017,
  SGDR, without restarts) — nanoGPT's schedule.
- "wsd": warmup-stable-decay (Hu et al. 2024, MiniCPM §4): linear warmup, a long constant phase at the peak,
  then a short decay (here linear to `min_lr_ratio * peak`) over the last `decay_fraction` of the steps.
  The stable phase means a run's length need not be fixed in advance.
- "constant": warmup then flat.
"""
from __future__ import annotations

import math


SCHEDULES = ("cosine", "wsd", "constant")


def lr_at(step: int, *, peak: float, total_steps: int, warmup_steps: int, schedule: str = "cosine",
          min_lr_ratio: float = 0.1, decay_fraction: float = 0.2) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    floor = peak * min_lr_ratio
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, int(round(decay_fraction * total_steps)))
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return peak
        progress = min(1.0, (step - decay_start) / decay_steps)
        return peak + (floor - peak) * progress
    raise ValueError(f"unknown lr schedule {schedule!r}; expected cosine | wsd | constant")
