"""model/dropout.py: the CPU mask keeps each element with probability 1 - p (every one of the three lanes
of a 64-bit draw alike), the output is unbiased, the gradient is the same scaled mask, it is repeatable
under a seed, and eval / p = 0 are the identity."""
import torch
import torch.nn.functional as F

from zerollm.model.dropout import dropout, keep_mask


def test_keep_probability_per_lane_and_unbiased_output():
    torch.manual_seed(0)
    n = 3 * 400_000
    for p in (0.1, 0.3, 0.5):
        keep, q = keep_mask((n,), p)
        assert abs(q - (1 - p)) < 1 / 65536
        lanes = keep.view(-1, 3).float().mean(0)  # element i uses lane i % 3 of its draw
        sd = (q * (1 - q) / (n / 3)) ** 0.5
        assert ((lanes - q).abs() < 5 * sd).all(), (p, lanes)
        # neighbouring elements are independent: P(keep both) = q^2
        both = (keep[:-1] & keep[1:]).float().mean().item()
        assert abs(both - q * q) < 5 * (q * q * (1 - q * q) / n) ** 0.5
    x = torch.full((200_000,), 2.0)
    assert abs(dropout(x, 0.1, True).mean().item() - 2.0) < 0.01  # E[out] = x


def test_gradient_is_the_scaled_mask_and_seeded_runs_repeat():
    x = torch.randn(7, 5, 33, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.25, True)
    y.sum().backward()
    kept = y != 0
    q = 1 - round(0.25 * 65536) / 65536
    assert torch.allclose(y[kept], x[kept] / q)
    assert torch.equal(x.grad, kept.float() / q)
    assert 0.6 < kept.float().mean().item() < 0.9
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.25, True), y)


def test_identity_in_eval_and_at_p0_and_f_dropout_at_p1():
    x = torch.randn(4, 9)
    assert dropout(x, 0.5, False) is x
    assert dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), F.dropout(x, 1.0, True))  # all zeros
