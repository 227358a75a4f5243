"""Learning from preference pairs (x, y⁺ chosen, y⁻ rejected): a reward model, or DPO directly on the policy.

Reward     Bradley–Terry pairwise loss (InstructGPT, Ouyang et al. 2022, eq. 1):
               loss = −log σ(r(x, y⁺) − r(x, y⁻)),   r = value_head(hidden at the last response token)
           Pairs carry a weight w: 1 for a chosen/rejected record, 1/C(K,2) for each of the C(K,2) pairs of a
           ranking of K answers (eq. 1's per-prompt normalization), and a batch's loss is Σ w·loss / Σ w,
           so every prompt counts once however many answers it ranked (the plain mean when all w = 1).
DPO        (Rafailov et al. 2023, eq. 7), with h = [log π(y⁺) − log π_ref(y⁺)] − [log π(y⁻) − log π_ref(y⁻)]:
               sigmoid: −(1−ε) log σ(β h) − ε log σ(−β h)      (ε = label smoothing: cDPO / robust DPO)
               ipo:     (h − 1/(2β))²                           (Azar et al. 2023, eq. 17)
           π_ref's log-probabilities are computed once, before training (`reference_logps`).

Batches (posttrain/data.PreferenceData): (x (2B, T), y, index (B,), w (B,)), the B chosen rows first, then
the B rejected rows in the same order; index numbers the pairs, w weighs them (DPO uses the same weighted mean).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zerollm.objectives.base import IGNORE_INDEX, hidden_and_values, sequence_logps

# ----------------------------------------------------------------------------------------------------------
# reward model


def last_target_index(y: torch.Tensor) -> torch.Tensor:
    """Index of the last response token in x for each row: one past the last labelled position (B,)."""
    T = y.shape[1]
    pos = torch.arange(T, device=y.device).expand_as(y)
    last = torch.where(y != IGNORE_INDEX, pos, torch.full_like(pos, -1)).amax(-1)
    return (last + 1).clamp(max=T - 1)


def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reward-model score of each sequence (B,): the head's value at its last response token."""
    _, v = hidden_and_values(model, x)
    return v.gather(1, last_target_index(y).unsqueeze(1)).squeeze(1)


def weighted_mean(losses: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Σ w·loss / Σ w over the pairs of a batch (the plain mean without weights)."""
    if weight is None:
        return losses.mean()
    weight = weight.to(losses)
    return (weight * losses).sum() / weight.sum()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """InstructGPT eq. 1: −log σ(r⁺ − r⁻), averaged over pairs (weighted by 1/C(K,2) for rankings)."""
    return weighted_mean(-F.logsigmoid(r_chosen - r_rejected), weight)


class RewardObjective:
    """Batch = (x (2B, T), y, index[, w]): chosen rows first, then rejected."""

    name = "reward"

    def loss(self, model, batch):
        x, y = batch[0], batch[1]
        r = scores(model, x, y)
        B = x.shape[0] // 2
        rc, rr = r[:B], r[B:]
        d = (rc - rr).detach()
        return bradley_terry_loss(rc, rr, batch[3] if len(batch) > 3 else None), {"accuracy": float((d > 0).float().mean()), "margin": float(d.mean())}


@torch.no_grad()
def evaluate_pairs(model, data, batch_size: int, score_fn) -> dict:
    """Held-out pairwise accuracy and mean margin of score_fn(model, x, y, index) -> (B,) per pair."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    acc, margin, n = 0.0, 0.0, 0
    for x, y, idx, *_ in data.iter_all(batch_size):
        m = score_fn(model, x.to(device), y.to(device), idx.to(device))
        acc += float((m > 0).sum() + 0.5 * (m == 0).sum())  # a tie (e.g. a zero-initialised head) is a coin flip
        margin += float(m.sum())
        n += m.numel()
    model.train(was)
    return {"pair_accuracy": acc / max(n, 1), "margin": margin / max(n, 1)}


def reward_margin(model, x, y, idx):
    r = scores(model, x, y)
    B = x.shape[0] // 2
    return r[:B] - r[B:]


# ----------------------------------------------------------------------------------------------------------
# DPO


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float = 0.1, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rafailov et al. 2023 eq. 7 (and variants) from summed log-probs (B,) → (mean loss, β·h per pair)."""
    h = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r} (sigmoid | ipo)")
    return weighted_mean(losses, weight), beta * h


@torch.no_grad()
def reference_logps(model: nn.Module, data, batch_size: int = 8) -> torch.Tensor:
    """log π_ref of every pair, computed once: (N, 2) [chosen, rejected], on the model's device."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.zeros(len(data.pairs), 2, device=device)
    for x, y, idx, *_ in data.iter_all(batch_size):
        lp = sequence_logps(model, x.to(device), y.to(device))
        B = idx.numel()
        out[idx.to(device), 0], out[idx.to(device), 1] = lp[:B], lp[B:]
    model.train(was)
    return out


class DPOObjective:
    """Batch = (x (2B, T), y, index); `ref` (N, 2) holds π_ref's log-probs of every pair."""

    name = "dpo"

    def __init__(self, ref: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
        self.ref, self.beta, self.loss_type, self.label_smoothing = ref, beta, loss_type, label_smoothing

    def margins(self, model, x, y, idx):
        lp = sequence_logps(model, x, y)
        B = idx.numel()
        ref = self.ref.to(x.device)[idx]
        return lp[:B], lp[B:], ref[:, 0], ref[:, 1]

    def loss(self, model, batch):
        x, y, idx = batch[0], batch[1], batch[2]
        pc, pr, rc, rr = self.margins(model, x, y, idx)
        loss, bh = dpo_loss(pc, pr, rc, rr, self.beta, self.loss_type, self.label_smoothing,
                            batch[3] if len(batch) > 3 else None)
        bh, pc, pr = bh.detach(), pc.detach(), pr.detach()
        return loss, {"reward_accuracy": float((bh > 0).float().mean()), "reward_margin": float(bh.mean()),
                      "chosen_reward": float((self.beta * (pc - rc)).mean()),
                      "rejected_reward": float((self.beta * (pr - rr)).mean())}

    def pair_margin(self, model, x, y, idx):
        pc, pr, rc, rr = self.margins(model, x, y, idx)
        return self.beta * ((pc - rc) - (pr - rr))
