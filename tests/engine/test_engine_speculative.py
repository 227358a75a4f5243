"""Speculative decoding: greedy output identical to the target alone; accept/reject keeps the target's
distribution (statistical test on the acceptance rule itself, and end to end on the first tokens)."""
from __future__ import annotations

import pytest
import torch

from zerollm.engine.generate import GenerationConfig, generate
from zerollm.engine.speculative import speculative_accept, speculative_generate


@pytest.fixture
def tiny(tiny_model):
    """tiny(seed, d=64, layers=2, V=50): conftest's tiny model, 80 positions, larger random weights."""
    def make(seed, d=64, layers=2, V=50):
        return tiny_model(seed, vocab_size=V, n_layer=layers, d_model=d, max_seq_len=80, init_std=0.4)
    return make


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_is_identical_to_target(k, tiny):
    target, draft = tiny(0), tiny(1, d=32, layers=1)
    cfg = GenerationConfig(max_new_tokens=30, temperature=0, stop_token_ids=[])
    for prompt in ([1, 2, 3], [7], [4, 4, 9, 11, 2]):
        stats = {}
        assert speculative_generate(target, draft, prompt, cfg, num_draft=k, stats=stats) == \
            generate(target, None, prompt, cfg)
    same = {}
    speculative_generate(target, target, [1, 2, 3], cfg, num_draft=k, stats=same)
    assert same["accepted"] == same["proposed"]  # the target as its own draft: everything accepted


def test_accept_rule_keeps_target_distribution():
    g = torch.Generator().manual_seed(0)
    V, k, n = 5, 2, 6000
    p = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.1, 0.6, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    q = torch.tensor([[0.1, 0.1, 0.6, 0.1, 0.1], [0.3, 0.3, 0.2, 0.1, 0.1]])
    counts = torch.zeros(V)
    for _ in range(n):
        draft = [int(torch.multinomial(q[i], 1, generator=g)) for i in range(k)]
        counts[speculative_accept(p, q, draft, g)[0]] += 1
    assert torch.allclose(counts / n, p[0], atol=0.025)  # ~4 sigma


def test_sampled_first_token_distribution_end_to_end(tiny):
    target, draft = tiny(0, V=8), tiny(3, d=32, layers=1, V=8)
    prompt = [1, 2]
    with torch.no_grad():
        want = (target(torch.tensor([prompt]))[0, -1] / 1.0).softmax(-1)
    n, counts = 500, torch.zeros(8)
    for s in range(n):
        out = speculative_generate(target, draft, prompt, GenerationConfig(max_new_tokens=3, temperature=1.0,
                                                                           seed=s, stop_token_ids=[]), num_draft=2)
        counts[out[0]] += 1
    assert torch.allclose(counts / n, want, atol=0.07)  # ~3.5 sigma
