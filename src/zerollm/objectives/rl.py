"""Reinforcement learning on sampled responses: PPO with a learned critic, GRPO with group-relative advantages.

Rollouts (posttrain/rl.py) sample responses from the current policy π_old and score them; these losses then
update π on those fixed samples. Only response tokens count (mask / labels ≠ -100).

PPO        (Schulman et al. 2017, eq. 7) clipped surrogate per response token,
               L = −min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t),   ρ_t = π(a_t|s_t) / π_old(a_t|s_t)
           + clipped value loss ½ max((V−R)², (V_old + clip(V−V_old, ±ε_v) − R)²);
           rewards per token r_t = −β_KL (log π_old − log π_ref)_t, plus the reward model's score on the
           last token; advantages by GAE (Schulman et al. 2016, eq. 16):
               δ_t = r_t + γ V_{t+1} − V_t,   Â_t = Σ_l (γλ)^l δ_{t+l}
GRPO       (Shao et al. 2024, eq. 3): G samples per prompt, outcome advantage Â_i = (r_i − mean r) / std r
           for every token of sample i; per-token clipped ratio as PPO minus β·KL, with the unbiased
           "k3" estimator KL = π_ref/π − log(π_ref/π) − 1; averaged over tokens of a sample, then samples
           (norm="seq"), or over all tokens (DAPO, "token"), or divided by B·max_len (Dr. GRPO, "constant";
           with scale=False advantages r − mean r: Liu et al. 2025).
"""
from __future__ import annotations

import torch

from zerollm.objectives.base import IGNORE_INDEX, hidden_and_values, token_logps, unwrap

# ----------------------------------------------------------------------------------------------------------
# PPO pieces


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16) over the masked (response) positions
    of each row, which must be contiguous; the episode ends after the last one (V = 0 beyond).
    rewards, values, mask: (B, T) → (advantages, returns = advantages + values), zero off the mask."""
    mask = mask.float()
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    next_value = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in range(rewards.shape[1] - 1, -1, -1):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m
        adv[:, t] = last
        next_value = torch.where(m > 0, values[:, t], next_value * 0)
    return adv, (adv + values) * mask


def ppo_policy_loss(logp, old_logp, adv, mask, clip: float = 0.2):
    """Schulman et al. 2017 eq. 7, mean over masked tokens → (loss, clip fraction)."""
    ratio = torch.exp(logp - old_logp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    m = mask.float()
    loss = -(surr * m).sum() / m.sum().clamp_min(1)
    clipped = (((ratio - 1).abs() > clip).float() * m).sum() / m.sum().clamp_min(1)
    return loss, clipped


def ppo_value_loss(v, old_v, returns, mask, clip: float = 0.2):
    """½ max((V−R)², (V_old + clip(V − V_old, ±clip) − R)²), mean over masked tokens."""
    v_clipped = old_v + (v - old_v).clamp(-clip, clip)
    m = mask.float()
    return 0.5 * (torch.maximum((v - returns) ** 2, (v_clipped - returns) ** 2) * m).sum() / m.sum().clamp_min(1)


def kl_shaped_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards −β(log π − log π_ref) with the sequence score added on the last response token.
    Returns (rewards (B, T), KL per sequence (B,))."""
    m = mask.float()
    kl = (logp - ref_logp) * m
    rewards = -kl_coef * kl
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device).expand_as(mask)
    last = torch.where(mask, pos, torch.full_like(pos, -1)).amax(-1).clamp_min(0)
    rewards = rewards.scatter_add(1, last.unsqueeze(1), score.unsqueeze(1).float())
    return rewards, kl.sum(-1)


class PPOObjective:
    """Batch = (x, y, mask, old_logp, old_values, advantages, returns, stats): y labels the response tokens
    (B, T); the rest are (B, T) floats aligned with y; stats carries rollout metrics for logging."""

    name = "ppo"

    def __init__(self, clip: float = 0.2, value_clip: float = 0.2, vf_coef: float = 0.1,
                 stat_names: tuple[str, ...] = ()):
        self.clip, self.value_clip, self.vf_coef, self.stat_names = clip, value_clip, vf_coef, stat_names

    def loss(self, model, batch):
        x, y, mask, old_logp, old_v, adv, ret = batch[:7]
        h, v = hidden_and_values(model, x)
        logp = token_logps(unwrap(model).logits(h), y)
        mask = mask > 0
        pg, clipfrac = ppo_policy_loss(logp, old_logp, adv, mask, self.clip)
        vf = ppo_value_loss(v, old_v, ret, mask, self.value_clip)
        metrics = {"pg_loss": float(pg.detach()), "vf_loss": float(vf.detach()), "clipfrac": float(clipfrac)}
        metrics.update(_stats(batch[7], self.stat_names))
        return pg + self.vf_coef * vf, metrics


def _stats(t: torch.Tensor, names) -> dict:
    return {n: float(v) for n, v in zip(names, t.reshape(-1, len(names))[0].tolist())} if len(names) else {}


# ----------------------------------------------------------------------------------------------------------
# GRPO


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Shao et al. 2024 eq. 3 (outcome supervision): rewards (N, G) → (r − mean_g r) / (std_g r + eps).
    scale=False keeps r − mean_g r (Dr. GRPO, Liu et al. 2025 sec. 3.1): dividing by the group std gives
    groups that are almost all right or all wrong (tiny std) the largest advantages — a per-question
    difficulty bias."""
    mean = rewards.mean(-1, keepdim=True)
    if not scale:
        return rewards - mean
    std = rewards.std(-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Unbiased, non-negative per-token KL estimate: π_ref/π − log(π_ref/π) − 1 (Schulman 2020; GRPO eq. 4)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


GRPO_NORMS = ("seq", "token", "constant")


def grpo_loss(logp, old_logp, ref_logp, adv, mask, clip: float = 0.2, beta: float = 0.04, norm: str = "seq",
              max_len: int | None = None):
    """GRPO eq. 3 → (loss, mean KL per sequence). logp/old/ref (B, T) per token, adv (B,), mask (B, T).

    How the per-token terms ℓ_it = min(ρ Â, clip(ρ) Â) − β KL are averaged (`norm`):
      seq       (1/B) Σ_i (1/|o_i|) Σ_t ℓ_it       GRPO as published: short wrong answers are punished
                                                   more per token, long ones less (a length bias)
      token     Σ_it ℓ_it / Σ_i |o_i|              DAPO (Yu et al. 2025): every token weighs the same
      constant  Σ_it ℓ_it / (B · max_len)          Dr. GRPO (Liu et al. 2025): a fixed divisor, unbiased
    """
    if norm not in GRPO_NORMS:
        raise ValueError(f"GRPO loss norm {norm!r}: expected one of {', '.join(GRPO_NORMS)}")
    ratio = torch.exp(logp - old_logp)
    a = adv.unsqueeze(1)
    surr = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    kl = k3_kl(logp, ref_logp)
    m = mask.float()
    per_tok = (surr - beta * kl) * m
    if norm == "seq":
        obj = (per_tok.sum(-1) / m.sum(-1).clamp_min(1)).mean()
    elif norm == "token":
        obj = per_tok.sum() / m.sum().clamp_min(1)
    else:
        obj = per_tok.sum() / (m.shape[0] * (max_len or m.shape[1]))
    kl_seq = (kl * m).sum(-1) / m.sum(-1).clamp_min(1)
    return -obj, kl_seq.mean()


class GRPOObjective:
    """Batch = (x, y, old_logp, ref_logp, advantages (B,), stats). `norm`/`max_len`: see grpo_loss."""

    name = "grpo"

    def __init__(self, clip: float = 0.2, beta: float = 0.04, stat_names: tuple[str, ...] = (),
                 temperature: float = 1.0, norm: str = "seq", max_len: int | None = None):
        if norm not in GRPO_NORMS:
            raise ValueError(f"GRPO loss norm {norm!r}: expected one of {', '.join(GRPO_NORMS)}")
        self.clip, self.beta, self.stat_names, self.norm, self.max_len = clip, beta, stat_names, norm, max_len
        self.temperature = temperature if temperature > 0 else 1.0  # log-probs of the sampling distribution

    def loss(self, model, batch):
        x, y, old_logp, ref_logp, adv = batch[:5]
        logp = token_logps(model(x) / self.temperature, y)
        loss, kl = grpo_loss(logp, old_logp, ref_logp, adv, y != IGNORE_INDEX, self.clip, self.beta, self.norm,
                             self.max_len)
        return loss, {"kl": float(kl.detach()), **_stats(batch[5], self.stat_names)}
