"""The fitter recovers a known law from noisy synthetic points (scaling/fit.py)."""
from __future__ import annotations

import math

import numpy as np
import torch

from zerollm.scaling.fit import LawFit, approach2, batched_lbfgs, fit_law, fit_rows, predict

TRUE = LawFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Chinchilla's fitted law (eq. 10)


def _points(n=40, noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(math.log(1e7), math.log(1e9), n))
    D = np.exp(rng.uniform(math.log(1e9), math.log(1e11), n))
    return N, D, TRUE.loss(N, D) * np.exp(rng.normal(0, noise, n))


def test_batched_lbfgs_solves_each_row_on_its_own():
    """Rows are independent problems with different minima (a quadratic bowl and Rosenbrock)."""
    target = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)

    def f(x):
        bowl = ((x - target) ** 2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum(-1)
        rosen = 100 * (x[:, 1] - x[:, 0] ** 2) ** 2 + (1 - x[:, 0]) ** 2
        return torch.stack([bowl[0], rosen[1]]) if len(x) == 2 else bowl

    x, v = batched_lbfgs(f, torch.tensor([[0.0, 0.0], [-1.2, 1.0]], dtype=torch.float64), max_iter=300)
    assert torch.allclose(x[0], target[0], atol=1e-5) and torch.allclose(x[1], torch.ones(2, dtype=torch.float64),
                                                                          atol=1e-4)


def test_recovers_known_law_from_noisy_points():
    """0.5% log-normal noise on 40 points: the exponents within ±0.05, E within 5%, the N_opt exponent
    a = β/(α+β) within ±0.05, and predictions within 1% across the range (A and B trade off with α, β, so
    they are only loosely identified: within a factor 2)."""
    N, D, L = _points()
    f = fit_law(N, D, L, starts=16)
    assert abs(f.alpha - TRUE.alpha) < 0.05 and abs(f.beta - TRUE.beta) < 0.05
    assert abs(f.E - TRUE.E) / TRUE.E < 0.05 and abs(f.a - TRUE.a) < 0.05
    assert 0.5 < f.A / TRUE.A < 2 and 0.5 < f.B / TRUE.B < 2
    grid = np.geomspace(1e7, 1e9, 5)[:, None], np.geomspace(1e9, 1e11, 5)[None, :]
    assert np.max(np.abs(f.loss(*grid) / TRUE.loss(*grid) - 1)) < 0.01


def test_isoflop_parabolas_and_bootstrap():
    """Noise-free IsoFLOP curves from the known law: approach 2's N_opt(C) exponent is the law's a (±0.03);
    the 90% bootstrap interval of approach 3's α contains the truth."""
    rows = []
    rng = np.random.default_rng(1)
    for C in (1e18, 1e19, 1e20, 1e21):
        n_opt = TRUE.optimal(C)[0]
        for N in n_opt * np.geomspace(0.25, 4, 7):
            D = C / (6 * N)
            rows.append({"params_matmul": N, "tokens": D, "flops": C, "compute_budget": C,
                         "val_loss": float(TRUE.loss(N, D) * math.exp(rng.normal(0, 0.002))), "val_bpb": 1.0})
    a2 = approach2(rows, "params_matmul")
    assert abs(a2["a"] - TRUE.a) < 0.03 and abs(a2["b"] - TRUE.b) < 0.03
    fit = fit_rows(rows, bootstrap=12, starts=16)
    lo, hi = fit["approach3"]["ci90"]["alpha"]
    assert lo <= TRUE.alpha + 0.02 and hi >= TRUE.alpha - 0.02
    p = predict(fit, 1e9, 2e10)
    assert abs(p["loss"] / float(TRUE.loss(1e9, 2e10)) - 1) < 0.01 and p["bpb"] > 0
