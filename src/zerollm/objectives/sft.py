"""Supervised fine-tuning: next-token cross entropy (lm.py) on the assistant tokens only.

The labels come from chat_format's assistant mask (posttrain/data.py): y_t = -100 on the prompt, system
and user turns and padding, so only what the model should learn to say is scored. Packed rows (several
examples in one row, data.pack) carry document ids, which the model turns into a per-document causal mask.
"""
from __future__ import annotations

import torch
from torch import nn

from zerollm.objectives.base import IGNORE_INDEX
from zerollm.objectives.lm import next_token_loss


def _forward(model, batch):
    """Logits of (x, y[, segments]) batches: packed rows carry document ids (data.pack), which the model turns
    into a per-document causal mask; unpacked rows take the plain causal path."""
    if len(batch) > 2:
        return model(batch[0], segments=batch[2])
    return model(batch[0])


class SFTObjective:
    """Cross entropy on the labelled (assistant) tokens; batch = (x, y) or packed (x, y, segments)."""

    name = "sft"

    def loss(self, model, batch):
        y = batch[1]
        loss = next_token_loss(_forward(model, batch), y)
        return loss, {"target_tokens": float((y != IGNORE_INDEX).sum())}


@torch.no_grad()
def evaluate_sft(model: nn.Module, batches) -> dict:
    """Mean cross entropy per labelled token over `batches` (held-out SFT batches, packed or not)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    device = next(model.parameters()).device
    for batch in batches:
        batch = tuple(t.to(device) for t in batch)
        y = batch[1]
        total += float(next_token_loss(_forward(model, batch), y, reduction="sum"))
        n += int((y != IGNORE_INDEX).sum())
    model.train(was)
    return {"val_loss": total / max(n, 1)}
