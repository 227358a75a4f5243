"""What every objective shares: the `Objective` protocol, the label that means "no loss here", per-token
log-probabilities, and the scalar value head (reward model score, PPO critic).

The one training loop (`zerollm.train.loop.train`) knows nothing about language modelling: it asks an
`Objective` for `loss(model, batch) -> (loss tensor, metrics dict)`. Each objective defines its own batch
shape (lm.py, sft.py, preference.py, rl.py).

Notation: x (B, T) token ids, y (B, T) next-token labels with IGNORE_INDEX (-100) where no loss is taken
(prompt, padding), log π(y|x) = Σ_t log p(y_t | x_≤t) summed over the labelled positions.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # label of positions without a loss (F.cross_entropy's default ignore_index)


class Objective(Protocol):
    name: str

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        ...


def unwrap(model: nn.Module) -> nn.Module:
    """The Transformer inside a DDP and/or torch.compile wrapper (for its extra heads and methods)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def token_logps(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y_t) per position (B, T); 0 where y == -100."""
    mask = y != IGNORE_INDEX
    lp = torch.gather(F.log_softmax(logits.float(), -1), -1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return lp * mask


def sequence_logps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_t log π(y_t | x_≤t) over labelled positions: (B,)."""
    return token_logps(model(x), y).sum(-1)


# ----------------------------------------------------------------------------------------------------------
# scalar head (reward model, PPO value)


def add_value_head(model: nn.Module) -> nn.Linear:
    """Attach `value_head` (d_model → 1, zero-initialised) to a Transformer; returns it. Its weights are
    saved with the model's (`value_head.weight`, `value_head.bias`)."""
    head = nn.Linear(model.cfg.d_model, 1).to(next(model.parameters()).device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    model.value_head = head
    return head


def hidden_and_values(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden (B, T, D), values (B, T)) — one forward for both the LM and the scalar head."""
    h = model(x, return_hidden=True)
    return h, unwrap(model).value_head(h).squeeze(-1).float()
