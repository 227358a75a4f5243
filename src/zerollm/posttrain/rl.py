"""RL rollouts as batch sources for the one training loop (GRPO and PPO).

The loop asks its batch source for `next_batch()`; here that *generates* — the current policy samples
completions through the `Engine` (engine/engine.py), they are scored, and the tensors the objective needs come back:

    prompts ──(policy, Engine)──▶ completions ──reward──▶ advantages ──▶ batch tensors
                                                                      └─ reused `updates_per_rollout`
                                                                         times (GRPO's μ, PPO epochs)

Sampling is seeded from (seed, rollout number, sample number), and `state_dict()` holds the prompt order
position, the rollout counter and the current rollout buffer, so a resumed run continues exactly.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch

from zerollm.chat.format import prompt_ids, render, stop_token_ids
from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig
from zerollm.objectives import (
    IGNORE_INDEX,
    gae,
    group_advantages,
    hidden_and_values,
    kl_shaped_rewards,
    scores,
    token_logps,
)
from zerollm.posttrain.data import _Shuffled, pad_batch
from zerollm.posttrain.lora import lora_modules
from zerollm.train.parallel import all_reduce_, full_model


@contextlib.contextmanager
def adapters_disabled(model):
    """Run the base model of a LoRA model (the reference policy) without copying it."""
    mods = [m for m in lora_modules(model).values() if not m.merged]
    for m in mods:
        m.merged = True  # a merged layer skips the LoRA branch; its weight holds the base here
    try:
        yield model
    finally:
        for m in mods:
            m.merged = False


class Reference:
    """The frozen reference policy: a copy of the start model, or the LoRA model with adapters disabled."""

    def __init__(self, policy, lora: bool):
        self.policy, self.lora = policy, lora
        self.model = None if lora else copy.deepcopy(policy).eval().requires_grad_(False)

    @torch.no_grad()
    def token_logps(self, x, y, temperature: float = 1.0):
        if self.lora:
            with adapters_disabled(self.policy):
                return token_logps(self.policy(x) / temperature, y)
        return token_logps(self.model(x) / temperature, y)


def sample_many(policy, tokenizer, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float,
                seeds: list[int], max_batch: int = 64) -> list[list[list[int]]]:
    """n completions per prompt (completion k of prompt j seeded seeds[j] + k), batched through one
    `engine.Engine` (its output per request equals what that request gives alone); a completion that stopped
    ends with the end-of-turn token."""
    stops = stop_token_ids(tokenizer)
    was_training = policy.training
    out: list[list[list[int]]] = []
    per_chunk = max(1, max_batch // n)  # prompts whose n completions fit in one batch
    try:
        engine = Engine(policy, tokenizer, max_batch_size=max(n, min(max_batch, n * len(prompts))))
        for j0 in range(0, len(prompts), per_chunk):
            handles = [engine.submit(list(prompts[j]), GenerationConfig(
                max_new_tokens=max_new_tokens, temperature=temperature, seed=seeds[j], stop_token_ids=stops,
                num_return_sequences=n)) for j in range(j0, min(len(prompts), j0 + per_chunk))]
            engine.run_until_done()
            for h in handles:
                out.append([list(c.token_ids) + ([stops[0]] if c.finish_reason == "stop" else [])
                            for c in sorted(h.results(), key=lambda c: c.index)])
    finally:
        policy.train(was_training)
    return out


def sample(policy, tokenizer, prompt_ids: list[int], n: int, max_new_tokens: int, temperature: float,
           seed: int) -> list[list[int]]:
    """n completions of one prompt (see sample_many)."""
    return sample_many(policy, tokenizer, [prompt_ids], n, max_new_tokens, temperature, [seed])[0]


def completion_text(tokenizer, completion: list[int]) -> str:
    stops = set(stop_token_ids(tokenizer))
    return tokenizer.decode([t for t in completion if t not in stops])


def rows_for(prompt_ids: list[int], completions: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    """(x, y) rows: y labels the completion tokens only."""
    rows = []
    for c in completions:
        ids = prompt_ids + c
        labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + c
        rows.append((ids[:-1], labels))
    return rows


class GRPORollouts(_Shuffled):
    """Each batch: `prompts_per_step` prompts × `group_size` samples → (x, y, old_logp, ref_logp, adv, stats).

    `scale_rewards=False`: advantages r − mean_g r without the division by the group std (Dr. GRPO).
    `drop_uniform=True`: groups whose G rewards are all equal (all right or all wrong: zero advantage, so no
    policy gradient, only the KL term) are left out of the batch, as in DAPO's dynamic sampling; when a
    whole rollout has none, up to `max_resample` more sets of prompts are sampled."""

    stat_names = ("reward", "accuracy", "completion_len", "reward_std", "informative")

    def __init__(self, policy, reference: Reference, tokenizer, prompts: list, reward_fn: Callable, *,
                 prompts_per_step: int, group_size: int, max_new_tokens: int, temperature: float,
                 updates_per_rollout: int = 1, seed: int = 0, accuracy_fn: Callable | None = None,
                 scale_rewards: bool = True, drop_uniform: bool = False, max_resample: int = 3,
                 chat_template: str | None = None):
        super().__init__(len(prompts), prompts_per_step, seed)
        self.chat_template = chat_template  # the model's own (loading.Loaded); None = ChatML
        self.policy, self.ref, self.tok, self.prompts = policy, reference, tokenizer, prompts
        self.reward_fn, self.accuracy_fn = reward_fn, accuracy_fn or reward_fn
        self.G, self.max_new, self.temperature, self.mu = group_size, max_new_tokens, temperature, updates_per_rollout
        self.scale_rewards, self.drop_uniform, self.max_resample = scale_rewards, drop_uniform, max_resample
        self.rollouts, self.uses, self.buffer = 0, 0, None
        self.gen = policy

    def _seeds(self, n: int) -> list[int]:
        """Sampling seed of each prompt of this rollout, numbered across all ranks (this rank's share of the
        global rollout starts at rank × prompts_per_step), so N ranks sample what one process would."""
        first = self.rank * self.batch_size
        return [self.seed * 1_000_003 + self.rollouts * 10_007 + (first + j) * 101 for j in range(n)]

    def _sample_groups(self) -> list[tuple[list[tuple[list[int], list[int]]], list[float], list[float], list[int]]]:
        """One set of prompts → per group: (x, y) rows, rewards, accuracies, completion lengths. `self.gen` is
        the policy with whole weights (parallel.full_model: under FSDP a gathered copy) that the Engine decodes."""
        picked = [self.prompts[i] for i in self.next_indices()]
        pids = [prompt_ids(msgs, self.tok, template=self.chat_template) for msgs, _ in picked]
        seeds = self._seeds(len(picked))
        groups = sample_many(self.gen, self.tok, pids, self.G, self.max_new, self.temperature, seeds)
        self.rollouts += 1
        out = []
        for (msgs, rec), p, comps in zip(picked, pids, groups):
            texts = [completion_text(self.tok, c) for c in comps]
            out.append((rows_for(p, comps), [float(self.reward_fn(t, rec.get("answer"))) for t in texts],
                        [float(self.accuracy_fn(t, rec.get("answer"))) for t in texts], [len(c) for c in comps]))
        return out

    @torch.no_grad()
    def _rollout(self) -> tuple[torch.Tensor, ...]:
        device = next(self.policy.parameters()).device
        self.gen = full_model(self.policy)  # every rank generates its own share of the rollout
        sampled = self._sample_groups()
        everything = list(sampled)
        if self.drop_uniform:
            kept = [g for g in sampled if max(g[1]) > min(g[1])]
            for _ in range(self.max_resample):
                if not all_reduce_(torch.tensor([float(not kept)]), "sum").item():  # ranks resample together,
                    break  # so the global prompt position stays the same on every rank
                more = self._sample_groups()
                everything += more
                kept = kept or [g for g in more if max(g[1]) > min(g[1])]
            sampled = kept or sampled  # nothing informative at all: train on the KL term only
        self.gen = self.policy  # let the gathered copy go before the training step
        rows = [row for g in sampled for row in g[0]]
        pad = self.tok.pad_id if self.tok.pad_id is not None else 0
        x, y = pad_batch(rows, pad)
        x, y = x.to(device), y.to(device)
        r = torch.tensor([g[1] for g in sampled], dtype=torch.float32)  # (N, G)
        adv = group_advantages(r, scale=self.scale_rewards).reshape(-1).to(device)
        t = self.temperature if self.temperature > 0 else 1.0  # on-policy: log-probs of what was sampled
        old = token_logps(self.policy(x) / t, y)
        ref = self.ref.token_logps(x, y, t)
        r_all = torch.tensor([g[1] for g in everything], dtype=torch.float32)
        accs = [a for g in everything for a in g[2]]
        lens = [n for g in everything for n in g[3]]
        informative = sum(max(g[1]) > min(g[1]) for g in everything) / len(everything)
        stats = torch.tensor([[r_all.mean().item(), sum(accs) / len(accs), sum(lens) / len(lens),
                               r_all.std(-1).mean().item(), informative]], device=device)
        # advantages are per prompt group, which lives on one rank: only the logged statistics need the mean
        # over ranks (each rank holds the same number of groups, so the mean of rank means is the global mean)
        return x, y, old, ref, adv, all_reduce_(stats)

    def next_batch(self):
        if self.buffer is None or self.uses >= self.mu:
            self.buffer, self.uses = self._rollout(), 0
        self.uses += 1
        return self.buffer

    def state_dict(self) -> dict:
        return {**super().state_dict(), "rollouts": self.rollouts, "uses": self.uses,
                "buffer": [t.cpu() for t in self.buffer] if self.buffer is not None else []}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rollouts, self.uses = int(state["rollouts"]), int(state["uses"])
        device = next(self.policy.parameters()).device
        self.buffer = tuple(t.to(device) for t in state["buffer"]) or None


class PPORollouts(GRPORollouts):
    """Each batch: `prompts_per_step` prompts, one sample each, scored by a reward model; per-token KL
    penalty, GAE → (x, y, mask, old_logp, old_values, adv, returns, stats). Served `updates_per_rollout`
    times (PPO epochs)."""

    stat_names = ("score", "kl", "completion_len", "property")

    def __init__(self, policy, reference: Reference, reward_model, tokenizer, prompts, *, prompts_per_step: int,
                 max_new_tokens: int, temperature: float, kl_coef: float, gamma: float, lam: float,
                 updates_per_rollout: int = 4, seed: int = 0, property_fn: Callable | None = None,
                 chat_template: str | None = None):
        super().__init__(policy, reference, tokenizer, prompts, lambda t, a: 0.0, prompts_per_step=prompts_per_step,
                         group_size=1, max_new_tokens=max_new_tokens, temperature=temperature,
                         updates_per_rollout=updates_per_rollout, seed=seed, chat_template=chat_template)
        self.rm, self.kl_coef, self.gamma, self.lam = reward_model, kl_coef, gamma, lam
        self.property_fn = property_fn or (lambda t: 0.0)

    @torch.no_grad()
    def _rollout(self):
        device = next(self.policy.parameters()).device
        rows, rm_rows, lens, props = [], [], [], []
        picked = [self.prompts[i] for i in self.next_indices()]
        pids = [prompt_ids(msgs, self.tok, template=self.chat_template) for msgs, _ in picked]
        seeds = self._seeds(len(picked))
        groups = sample_many(full_model(self.policy), self.tok, pids, 1, self.max_new, self.temperature, seeds)
        for (msgs, _), p, (c,) in zip(picked, pids, groups):
            rows += rows_for(p, [c])
            text = completion_text(self.tok, c)
            props.append(self.property_fn(text))
            r = render(list(msgs) + [{"role": "assistant", "content": text}], self.tok,
                       template=self.chat_template, train_on="last")
            rm_rows.append((r.ids[:-1], [t if m else IGNORE_INDEX for t, m in zip(r.ids[1:], r.mask[1:])]))
            lens.append(len(c))
        self.rollouts += 1
        pad = self.tok.pad_id if self.tok.pad_id is not None else 0
        x, y = (t.to(device) for t in pad_batch(rows, pad))
        rx, ry = (t.to(device) for t in pad_batch(rm_rows, pad))
        score = scores(self.rm, rx, ry)  # (B,)
        h, values = hidden_and_values(self.policy, x)
        old = token_logps(self.policy.logits(h), y)
        ref = self.ref.token_logps(x, y)
        mask = y != IGNORE_INDEX
        rewards, kl = kl_shaped_rewards(score, old, ref, mask, self.kl_coef)
        adv, ret = gae(rewards, values, mask, self.gamma, self.lam)
        m = mask.float()
        # whitening statistics over the global batch: sums reduced across ranks (no-op in one process)
        sums = all_reduce_(torch.stack([(adv * m).sum(), m.sum()]), "sum")
        mean = sums[0] / sums[1]
        std = (all_reduce_(((adv - mean) ** 2 * m).sum(), "sum") / sums[1]).sqrt()
        adv = (adv - mean) / (std + 1e-8) * m  # whitened advantages
        stats = all_reduce_(torch.tensor([[score.mean().item(), kl.mean().item(), sum(lens) / len(lens),
                                           sum(props) / len(props)]], device=device))
        return x, y, m, old, values, adv, ret, stats
