"""Pretraining: causal language modelling, next-token cross entropy over every labelled position.

    loss = −(1/N) Σ_t log p(y_t | x_≤t)     N = number of positions with y_t ≠ -100

Validation reports the same mean loss and, when the tokenizer's bytes per token on the data is known, bits
per byte (bpb = loss / ln 2 / bytes_per_token), which compares across tokenizers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zerollm.objectives.base import IGNORE_INDEX


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross entropy of logits (B, T, V) against targets (B, T); positions with -100 are ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction=reduction)


class LMObjective:
    """Causal language modelling: batch = (x, y) with y the next token of x (or -100 to skip)."""

    name = "lm"

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        x, y = batch[0], batch[1]
        loss = next_token_loss(model(x), y)
        return loss, {}


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, batches, bytes_per_token: float | None = None) -> dict:
    """Mean next-token loss over `batches` (an iterable of (x, y)), and bits per byte when the
    tokenizer's average bytes per token on this data is known: bpb = loss / ln 2 / bytes_per_token."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        n = int((y != IGNORE_INDEX).sum())
        total += float(next_token_loss(model(x), y, reduction="sum"))
        count += n
    model.train(was_training)
    if count == 0:
        return {}
    loss = total / count
    out = {"val_loss": loss}
    if bytes_per_token:
        out["val_bpb"] = loss / math.log(2) / bytes_per_token
    return out
