"""Logits processors and next-token sampling: pure functions on logits of shape (B, V).

The order `sample_next` applies them is HF's: repetition penalty -> temperature -> top-k -> top-p ->
softmax -> draw. Filters set removed entries to -inf, so they compose in any order and softmax ignores them.
Temperature 0 means greedy (argmax), the deterministic choice that parity tests and evals use.
"""
from __future__ import annotations

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T: T < 1 sharpens the distribution, T > 1 flattens it (T must be > 0)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use 0 in GenerationConfig for greedy decoding)")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits per row (ties broken by torch.topk), the rest -> -inf
    (Fan et al. 2018)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    values, indices = torch.topk(logits, k, dim=-1)  # (B, k)
    return torch.full_like(logits, float("-inf")).scatter_(-1, indices, values)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020, eq. 3): keep the smallest set of most-likely tokens whose
    total probability is >= p; the rest -> -inf. A token is kept iff the mass of the tokens ranked strictly
    above it is < p, so the top token always survives."""
    if p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # (B, V): probability of the tokens ranked above
    remove_sorted = mass_above >= p
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, sec. 4.1) with HF's sign rule: for every token already
    in `prev_ids` (B, N), a positive logit is divided by `penalty`, a negative one multiplied by it. Each
    token is penalised once, however often it occurred."""
    if penalty == 1.0 or prev_ids.numel() == 0:
        return logits
    prev_ids = prev_ids.view(logits.shape[0], -1)
    score = torch.gather(logits, -1, prev_ids)  # (B, N)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(-1, prev_ids, score)


def process_logits(logits: torch.Tensor, cfg, prev_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Apply cfg's repetition penalty, temperature, top-k and top-p to logits (B, V). `cfg` is any object
    with the GenerationConfig fields (temperature, top_k, top_p, repetition_penalty)."""
    penalty = getattr(cfg, "repetition_penalty", 1.0) or 1.0
    if penalty != 1.0 and prev_ids is not None:
        logits = apply_repetition_penalty(logits, prev_ids, penalty)
    logits = apply_temperature(logits, cfg.temperature)
    if getattr(cfg, "top_k", None):
        logits = top_k_filter(logits, cfg.top_k)
    if getattr(cfg, "top_p", None) is not None and cfg.top_p < 1.0:
        logits = top_p_filter(logits, cfg.top_p)
    return logits


def sample_next(logits: torch.Tensor, generator: torch.Generator | None, cfg,
                prev_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V).

    cfg.temperature == 0: greedy argmax (after the repetition penalty, as HF applies it). Otherwise draw from
    softmax of the processed logits with `generator` (seeded -> reproducible; must live on logits' device).
    prev_ids (B, N): tokens seen so far, only needed for the repetition penalty.
    """
    if cfg.temperature == 0:
        penalty = getattr(cfg, "repetition_penalty", 1.0) or 1.0
        if penalty != 1.0 and prev_ids is not None:
            logits = apply_repetition_penalty(logits, prev_ids, penalty)
        return logits.argmax(dim=-1)
    probs = process_logits(logits.float(), cfg, prev_ids).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
