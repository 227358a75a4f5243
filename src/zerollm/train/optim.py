"""AdamW with weight-decay groups (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization").

Matrices (every parameter with 2+ dims: linear weights and embeddings) are decayed; biases and norm gains
are not, as in GPT-2/nanoGPT. Only parameters with `requires_grad` are given to the optimizer, so the
same function serves full fine-tuning and LoRA (where the base is frozen).
"""
from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_adamw(model: torch.nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                eps: float = 1e-8) -> torch.optim.AdamW:
    # The fused kernel (one pass over each parameter, torch >= 2.4 on CPU too) does the whole update; on the
    # nanoGPT CPU recipe (4 x 128) it took 0.8 ms instead of 3.3-4.5 ms with foreach (a one-off timing).
    # Builds or devices without it fall back to foreach, the portable multi-tensor path.
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
