"""Loss formulas against hand-computed values: DPO (+ cDPO, IPO), Bradley–Terry, GAE, PPO clipping,
GRPO advantages and KL, and the verifiable rewards."""
from __future__ import annotations

import math

import pytest
import torch

from zerollm.objectives import (bradley_terry_loss, dpo_loss, gae, group_advantages, grpo_loss, k3_kl,
                                kl_shaped_rewards, last_target_index, ppo_policy_loss, ppo_value_loss)
from zerollm.posttrain.rewards import exact_numeric_reward, format_reward, parse_final_number


def _sig(z):
    return 1 / (1 + math.exp(-z))


def test_dpo_loss_matches_paper_formula_by_hand():
    # Rafailov et al. 2023 eq. 7: −log σ(β[(log π(y⁺) − log π_ref(y⁺)) − (log π(y⁻) − log π_ref(y⁻))])
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.5, -2.5])
    beta = 0.5
    # pair 1: h = (−10+11) − (−12+11.5) = 1 + 0.5 = 1.5;  pair 2: h = (−4+4.5) − (−3+2.5) = 0.5 + 0.5 = 1.0
    h = [1.5, 1.0]
    expected = sum(-math.log(_sig(beta * x)) for x in h) / 2
    loss, bh = dpo_loss(pc, pr, rc, rr, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert bh.tolist() == pytest.approx([beta * x for x in h])
    # label smoothing ε (cDPO): −(1−ε) log σ(βh) − ε log σ(−βh)
    eps = 0.2
    exp_s = sum(-(1 - eps) * math.log(_sig(beta * x)) - eps * math.log(_sig(-beta * x)) for x in h) / 2
    assert dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps)[0].item() == pytest.approx(exp_s, rel=1e-6)
    # IPO: (h − 1/(2β))²
    exp_i = sum((x - 1 / (2 * beta)) ** 2 for x in h) / 2
    assert dpo_loss(pc, pr, rc, rr, beta, loss_type="ipo")[0].item() == pytest.approx(exp_i, rel=1e-6)
    # at π = π_ref the loss is log 2
    z = torch.zeros(3)
    assert dpo_loss(z, z, z, z, 0.1)[0].item() == pytest.approx(math.log(2))


def test_bradley_terry_loss():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = (-math.log(_sig(1.0)) - math.log(_sig(-1.0))) / 2
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected, rel=1e-6)


def test_gae_hand_computed():
    # one row: positions 0 (prompt) | 1, 2, 3 (response); γ = 0.9, λ = 0.8
    rewards = torch.tensor([[0.0, 0.1, -0.2, 1.0]])
    values = torch.tensor([[9.0, 0.5, 0.4, 0.3]])
    mask = torch.tensor([[False, True, True, True]])
    g, lam = 0.9, 0.8
    d3 = 1.0 + g * 0 - 0.3
    d2 = -0.2 + g * 0.3 - 0.4
    d1 = 0.1 + g * 0.4 - 0.5
    a3 = d3
    a2 = d2 + g * lam * a3
    a1 = d1 + g * lam * a2
    adv, ret = gae(rewards, values, mask, gamma=g, lam=lam)
    assert adv[0].tolist() == pytest.approx([0.0, a1, a2, a3], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.0, a1 + 0.5, a2 + 0.4, a3 + 0.3], abs=1e-6)
    # λ = 1, γ = 1: advantage = sum of future rewards − V
    adv1, _ = gae(rewards, values, mask, 1.0, 1.0)
    assert adv1[0, 1].item() == pytest.approx(0.1 - 0.2 + 1.0 - 0.5)


def test_kl_shaped_rewards_put_score_on_last_token():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, 0.0]])
    mask = torch.tensor([[False, True, True, False]])
    r, kl = kl_shaped_rewards(torch.tensor([3.0]), logp, ref, mask, kl_coef=0.1)
    assert r[0].tolist() == pytest.approx([0.0, -0.05, 0.1 + 3.0, 0.0])
    assert kl.item() == pytest.approx(0.5 - 1.0)


def test_ppo_clipped_losses():
    # ratios e^{0.5} ≈ 1.65 (clipped at 1.2 for A > 0) and e^{-0.5} ≈ 0.61 (A < 0: min picks the clipped 0.8·A)
    logp, old = torch.tensor([[0.5, -0.5]]), torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, clipfrac = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0) / 2, rel=1e-6)
    assert clipfrac.item() == 1.0
    v, old_v, ret = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]])
    # unclipped (1−2)² = 1, clipped (0.2−2)² = 3.24 → max → ½·3.24
    assert ppo_value_loss(v, old_v, ret, torch.ones(1, 1, dtype=torch.bool), 0.2).item() == pytest.approx(1.62)


def test_grpo_advantages_and_loss():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = group_advantages(r)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()  # unbiased, as in Shao et al.'s implementation
    assert adv[0].tolist() == pytest.approx([x / (std + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)], rel=1e-5)
    assert adv[1].abs().max().item() == 0.0  # all-equal groups carry no signal
    # k3 KL is ≥ 0 and 0 iff equal; on-policy (ratio 1) GRPO loss = −mean_i(Â_i) + β·KL
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -2.0]])
    assert k3_kl(lp, ref)[0].tolist() == pytest.approx([math.exp(-0.5) + 0.5 - 1, 0.0])
    loss, kl = grpo_loss(lp, lp, ref, torch.tensor([2.0]), torch.ones(1, 2, dtype=torch.bool), beta=0.1)
    kl_mean = (math.exp(-0.5) + 0.5 - 1) / 2
    assert loss.item() == pytest.approx(-(2.0 - 0.1 * kl_mean), rel=1e-6)
    assert kl.item() == pytest.approx(kl_mean, rel=1e-6)


def test_last_target_index():
    y = torch.tensor([[-100, 5, 6, -100, -100], [-100, -100, -100, 7, 8]])
    assert last_target_index(y).tolist() == [3, 4]


def test_rewards():
    assert parse_final_number("so 12\n#### 1,234") == 1234
    assert parse_final_number("no answer") is None
    assert exact_numeric_reward("4+8=12\n#### 12", "#### 12") == 1.0  # GSM8K reference solution
    assert exact_numeric_reward("#### $12.0", "12") == 1.0
    assert exact_numeric_reward("#### 13", 12) == 0.0
    assert format_reward("work\n#### 42") == 1.0 and format_reward("#### 42 and more") == 0.0


def test_grpo_loss_normalisations_and_unscaled_advantages():
    # Dr. GRPO advantages: r − mean, no std division
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert group_advantages(r, scale=False)[0].tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])
    # on-policy (ratio 1), β = 0: per-token term = Â_i. Sample 0 has 1 token (Â = 2), sample 1 has 3 (Â = −1).
    lp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    adv = torch.tensor([2.0, -1.0])
    seq, _ = grpo_loss(lp, lp, lp, adv, mask, beta=0.0, norm="seq")
    assert seq.item() == pytest.approx(-(2.0 + -1.0) / 2)  # mean over samples of per-sample token means
    tok, _ = grpo_loss(lp, lp, lp, adv, mask, beta=0.0, norm="token")
    assert tok.item() == pytest.approx(-(2.0 - 3.0) / 4)  # all 4 response tokens weigh the same
    const, _ = grpo_loss(lp, lp, lp, adv, mask, beta=0.0, norm="constant", max_len=10)
    assert const.item() == pytest.approx(-(2.0 - 3.0) / (2 * 10))  # fixed divisor B · max_len
    with pytest.raises(ValueError, match="norm"):
        grpo_loss(lp, lp, lp, adv, mask, norm="bogus")


def test_grpo_rollouts_drop_uniform_groups():
    from zerollm.config import ModelConfig
    from zerollm.model.transformer import Transformer
    from zerollm.posttrain.rl import GRPORollouts, Reference
    from zerollm.posttrain.tasks import byte_tokenizer

    torch.manual_seed(0)
    tok = byte_tokenizer()
    model = Transformer(ModelConfig(vocab_size=len(tok), n_layer=1, d_model=16, n_head=2, max_seq_len=32))
    prompts = [([{"role": "user", "content": f"q{i}"}], {"answer": str(i)}) for i in range(3)]
    src = GRPORollouts(model, Reference(model, False), tok, prompts, lambda t, a: 0.0, prompts_per_step=3,
                       group_size=2, max_new_tokens=4, temperature=1.0, drop_uniform=True, scale_rewards=False)
    row = ([1, 2, 3], [-100, 4, 5])
    canned = [([row, row], [1.0, 0.0], [1.0, 0.0], [2, 2]),  # informative
              ([row, row], [0.0, 0.0], [0.0, 0.0], [2, 2]),  # all wrong: dropped
              ([row, row], [1.0, 1.0], [1.0, 1.0], [2, 2])]  # all right: dropped
    src._sample_groups = lambda: canned
    x, y, old, ref, adv, stats = src._rollout()
    assert x.shape[0] == 2 and adv.tolist() == pytest.approx([0.5, -0.5])
    names = dict(zip(GRPORollouts.stat_names, stats[0].tolist()))
    assert names["informative"] == pytest.approx(1 / 3) and names["accuracy"] == pytest.approx(0.5)
