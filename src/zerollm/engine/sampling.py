"""Logits processors and next-token sampling: pure functions on logits of shape (B, V).

The order `sample_next` applies them is HF's: logit bias -> repetition penalty -> presence/frequency
penalties -> no-repeat-n-gram ban -> (greedy: argmax) temperature -> top-k -> top-p -> min-p -> softmax -> draw. Filters set removed entries to -inf, so they compose in any order and softmax ignores them.
Temperature 0 means greedy (argmax), the deterministic choice that parity tests and evals use.
"""
from __future__ import annotations

import math

import torch

from zerollm.artifacts import pyplot, save_figure


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


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Min-p sampling (Nguyen et al. 2024): keep tokens whose probability is >= min_p times the top token's
    probability; the rest -> -inf. Equivalent in logit space: logit >= max_logit + log(min_p)."""
    if min_p <= 0:
        return logits
    threshold = logits.max(dim=-1, keepdim=True).values + math.log(min_p)  # (B, 1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def apply_presence_frequency(logits: torch.Tensor, gen_ids: torch.Tensor, presence: float,
                             frequency: float) -> torch.Tensor:
    """OpenAI's penalties over the *generated* tokens gen_ids (B, N): logit[t] -= presence * [count_t > 0]
    + frequency * count_t."""
    if (presence == 0 and frequency == 0) or gen_ids.numel() == 0:
        return logits
    counts = torch.zeros_like(logits).scatter_add_(-1, gen_ids.view(logits.shape[0], -1),
                                                   torch.ones_like(gen_ids, dtype=logits.dtype).view(
                                                       logits.shape[0], -1))
    return logits - presence * (counts > 0).to(logits.dtype) - frequency * counts


def banned_ngram_tokens(prev: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `prev` (HF's no_repeat_ngram_size, after
    fairseq / Paulus et al. 2018): the next token t is banned if prev[-(n-1):] + [t] occurred before."""
    if n <= 0 or len(prev) + 1 < n:
        return []
    tail = tuple(prev[len(prev) - n + 1:]) if n > 1 else ()
    return [prev[i + n - 1] for i in range(len(prev) - n + 1) if tuple(prev[i:i + n - 1]) == tail]


def apply_logit_bias(logits: torch.Tensor, bias: dict) -> torch.Tensor:
    """Add bias[token] to that token's logit (OpenAI's logit_bias; -100 effectively bans, +100 forces)."""
    if not bias:
        return logits
    ids = torch.tensor([int(k) for k in bias], device=logits.device)
    vals = torch.tensor([float(v) for v in bias.values()], device=logits.device, dtype=logits.dtype)
    return logits.index_add(-1, ids, vals.expand(logits.shape[0], -1))


def needs_history(cfg) -> bool:
    """Whether cfg's processors look at the previous tokens (then callers must pass prev_ids)."""
    return ((getattr(cfg, "repetition_penalty", 1.0) or 1.0) != 1.0 or bool(getattr(cfg, "presence_penalty", 0))
            or bool(getattr(cfg, "frequency_penalty", 0)) or bool(getattr(cfg, "no_repeat_ngram_size", 0)))


def apply_processors(logits: torch.Tensor, cfg, prev_ids: torch.Tensor | None = None,
                     prompt_len: int = 0) -> torch.Tensor:
    """The history-dependent and bias processors (everything applied before greedy argmax), on (B, V).
    prev_ids (B, N): prompt + generated tokens; the first `prompt_len` are the prompt."""
    bias = getattr(cfg, "logit_bias", None)
    if bias:
        logits = apply_logit_bias(logits, bias)
    if prev_ids is None:
        return logits
    penalty = getattr(cfg, "repetition_penalty", 1.0) or 1.0
    if penalty != 1.0:
        logits = apply_repetition_penalty(logits, prev_ids, penalty)
    presence, frequency = getattr(cfg, "presence_penalty", 0.0), getattr(cfg, "frequency_penalty", 0.0)
    if presence or frequency:
        logits = apply_presence_frequency(logits, prev_ids[:, prompt_len:], presence, frequency)
    n = getattr(cfg, "no_repeat_ngram_size", 0)
    if n:
        bans = [banned_ngram_tokens(row, n) for row in prev_ids.tolist()]
        if any(bans):
            logits = logits.clone()
            for b, banned in enumerate(bans):
                logits[b, banned] = float("-inf")
    return logits


def process_logits(logits: torch.Tensor, cfg, prev_ids: torch.Tensor | None = None,
                   prompt_len: int = 0) -> torch.Tensor:
    """Apply every processor of cfg to logits (B, V): biases and penalties, then temperature, top-k, top-p
    and min-p. `cfg` is any object with the GenerationConfig fields (missing ones count as off)."""
    logits = apply_processors(logits, cfg, prev_ids, prompt_len)
    logits = apply_temperature(logits, cfg.temperature)
    if getattr(cfg, "top_k", None):
        logits = top_k_filter(logits, cfg.top_k)
    if getattr(cfg, "top_p", None) is not None and cfg.top_p < 1.0:
        logits = top_p_filter(logits, cfg.top_p)
    if getattr(cfg, "min_p", 0.0):
        logits = min_p_filter(logits, cfg.min_p)
    return logits


def sample_next(logits: torch.Tensor, generator: torch.Generator | None, cfg,
                prev_ids: torch.Tensor | None = None, prompt_len: int = 0) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V).

    cfg.temperature == 0: greedy argmax (after biases and penalties, as HF applies them). Otherwise draw from
    softmax of the processed logits with `generator` (seeded -> reproducible; must live on logits' device).
    prev_ids (B, N): tokens seen so far (prompt first, `prompt_len` of them), needed by the penalties.
    """
    if cfg.temperature == 0:
        return apply_processors(logits, cfg, prev_ids, prompt_len).argmax(dim=-1)
    probs = next_token_probs(logits, cfg, prev_ids, prompt_len)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def next_token_probs(logits: torch.Tensor, cfg, prev_ids: torch.Tensor | None = None,
                     prompt_len: int = 0) -> torch.Tensor:
    """The distribution (B, V) that `sample_next` draws from; greedy (temperature 0) is one-hot on the argmax
    (speculative decoding compares the target's and the draft's distributions, engine/speculative.py)."""
    if cfg.temperature == 0:
        best = apply_processors(logits, cfg, prev_ids, prompt_len).argmax(dim=-1)
        return torch.nn.functional.one_hot(best, logits.shape[-1]).float()
    return process_logits(logits.float(), cfg, prev_ids, prompt_len).softmax(dim=-1)


def token_logprobs(logits: torch.Tensor, chosen: torch.Tensor, top: int = 0):
    """Log-probabilities under the model's own distribution (log_softmax of the raw logits, before any
    processor, as vLLM reports them): of `chosen` (B,), and the `top` most likely (values, ids) (B, top)."""
    logp = logits.float().log_softmax(dim=-1)
    chosen_lp = logp.gather(-1, chosen.view(-1, 1)).squeeze(-1)
    if top > 0:
        values, ids = logp.topk(top, dim=-1)
        return chosen_lp, values, ids
    return chosen_lp, None, None


def softmax_with_temperature(logits, temperature: float) -> torch.Tensor:
    """p_i = exp(z_i / T) / sum_j exp(z_j / T): the distribution sampling draws from at temperature T (the
    books' temperature figure). T -> 0 approaches argmax (one-hot), T = 1 is the model's own softmax, large T
    approaches uniform. Takes a list or a tensor of logits (..., V)."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    return apply_temperature(z, temperature).softmax(dim=-1)


def plot_temperature(logits, temperatures=(0.5, 1.0, 2.0), labels=None, out="temperature.png",
                     title: str = "softmax with temperature"):
    """Draw the bar chart of `softmax_with_temperature(logits, T)` for each T side by side (one panel each)
    and save it as a PNG at `out` (written atomically); returns the path. `labels`: the tokens' names."""
    plt = pyplot()
    z = torch.as_tensor(logits, dtype=torch.float32).view(-1)
    labels = list(labels) if labels is not None else [str(i) for i in range(z.numel())]
    if len(labels) != z.numel():
        raise ValueError(f"{len(labels)} labels for {z.numel()} logits")
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.2 * len(temperatures), 3.2), dpi=110, sharey=True)
    for ax, t in zip(axes if len(temperatures) > 1 else [axes], temperatures):
        probs = softmax_with_temperature(z, t).tolist()
        ax.bar(range(len(probs)), probs, color="tab:blue")
        ax.set_xticks(range(len(probs)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"T = {t:g}")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes_list = axes if len(temperatures) > 1 else [axes]
    axes_list[0].set_ylabel("probability")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)
