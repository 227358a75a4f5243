"""Fit scaling laws to a sweep's rows (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models").

Approach 3 (§3.3, eq. 2 and app. D.2): the parametric loss
    L̂(N, D) = E + A / N^α + B / D^β
fitted in log space, with a = log A, b = log B, e = log E:
    log L̂ = LSE(a − α log N, b − β log D, e)                      (log-sum-exp: stable for any parameters)
    min over (a, b, e, α, β) of  Σ_i Huber_δ(log L̂(N_i, D_i) − log L_i),   δ = 10⁻³
by L-BFGS, started from the best points of Chinchilla's grid (α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1},
a, b ∈ {0, 5, …, 25}), keeping the lowest objective. The Huber loss makes the fit robust to outlying runs.
Under C ≈ 6 N D the loss-minimizing split of a budget C is (eq. 4)
    N_opt(C) = G (C/6)^(β/(α+β)),   D_opt(C) = G⁻¹ (C/6)^(α/(α+β)),   G = (α A / (β B))^(1/(α+β)).

Approach 2 (§3.2): along each IsoFLOP curve (fixed C, several N) fit a parabola of the loss in log N; its
vertex is N_opt(C), and D_opt = C / (FLOPs per token). Power laws N_opt ∝ C^a, D_opt ∝ C^b by least squares
in log-log.

Uncertainty: the bootstrap (Efron 1979): refit on the rows resampled with replacement (approach 2: within each
IsoFLOP curve) and report the 5th–95th percentiles of every quantity: a 90% interval.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DELTA = 1e-3  # Chinchilla's Huber δ
GRID = {"alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5), "e": np.arange(-1, 1.01, 0.5),
        "a": np.arange(0, 25.1, 5), "b": np.arange(0, 25.1, 5)}


@dataclass
class LawFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = float("nan")

    def loss(self, N, D):
        """L̂(N, D) = E + A/N^α + B/D^β."""
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    @property
    def a(self) -> float:  # N_opt ∝ C^a
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:  # D_opt ∝ C^b
        return self.alpha / (self.alpha + self.beta)

    def optimal(self, C: float) -> tuple[float, float]:
        """(N_opt, D_opt) for a compute budget C under C = 6 N D (Chinchilla eq. 4)."""
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return G * (C / 6) ** self.a, (C / 6) ** self.b / G

    def tokens_per_param(self, C: float) -> float:
        N, D = self.optimal(C)
        return D / N


def _objective(theta: torch.Tensor, logN: torch.Tensor, logD: torch.Tensor, logL: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i w_i Huber_δ(LSE(a − α log N_i, b − β log D_i, e) − log L_i) for theta = (a, b, e, α, β), one value
    per row of theta (K, 5); `weights` (K, n): how often each point counts (a bootstrap resample), else 1."""
    a, b, e, al, be = theta.unbind(-1)
    terms = torch.stack([a[..., None] - al[..., None] * logN, b[..., None] - be[..., None] * logD,
                         e[..., None].expand(*e.shape, logN.numel())], dim=-1)
    r = torch.logsumexp(terms, dim=-1) - logL
    h = torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=DELTA, reduction="none")
    return (h if weights is None else h * weights).sum(-1)


def batched_lbfgs(f, x0: torch.Tensor, max_iter: int = 500, history: int = 10, tol: float = 1e-10):
    """Minimize K independent problems at once: f maps (K, P) → (K,) values, one per start. Each row runs
    its own L-BFGS (Nocedal & Wright 2006, Alg. 7.4 two-loop recursion + 7.5) with its own backtracking
    (Armijo) line search; only the arithmetic is batched. Returns (x, f(x))."""
    def value_grad(x):
        x = x.detach().requires_grad_(True)
        v = f(x)
        g, = torch.autograd.grad(v.sum(), x)
        return v.detach(), g

    x = x0.clone()
    v, g = value_grad(x)
    S, Y = [], []

    def dot(u, w):  # row-wise inner product
        return (u * w).sum(-1, keepdim=True)

    active = torch.ones(len(x), 1, dtype=torch.bool)
    for _ in range(max_iter):
        q, alphas = g.clone(), []
        for s, y in reversed(list(zip(S, Y))):  # two-loop recursion: q ≈ H⁻¹ g
            rho = torch.where(dot(y, s) > 1e-20, 1.0 / dot(y, s).clamp_min(1e-20), torch.zeros_like(v[:, None]))
            alpha = rho * dot(s, q)
            q = q - alpha * y
            alphas.append((rho, alpha))
        if S:
            s, y = S[-1], Y[-1]
            q = q * torch.where(dot(y, s) > 1e-20, dot(s, y) / dot(y, y).clamp_min(1e-30), torch.ones_like(q[:, :1]))
        for (s, y), (rho, alpha) in zip(zip(S, Y), reversed(alphas)):
            q = q + s * (alpha - rho * dot(y, q))
        d = -q
        d = torch.where(dot(d, g) < 0, d, -g)  # not a descent direction: steepest descent
        t = torch.ones_like(v[:, None])
        slope = dot(g, d)
        for _ in range(40):  # backtrack until f(x + t d) ≤ f(x) + 1e-4 t gᵀd, row by row
            v_new = f(x + t * d).detach()
            bad = ~(v_new <= v + 1e-4 * t[:, 0] * slope[:, 0])
            if not bool(bad.any()):
                break
            t = torch.where(bad[:, None], t * 0.5, t)
        step = torch.where(active, t * d, torch.zeros_like(d))
        x_new = x + step
        v_new, g_new = value_grad(x_new)
        improved = v_new <= v
        x = torch.where(improved[:, None], x_new, x)
        S.append(torch.where(improved[:, None], step, torch.zeros_like(step)))
        Y.append(torch.where(improved[:, None], g_new - g, torch.zeros_like(g)))
        S, Y = S[-history:], Y[-history:]
        change = (v - torch.where(improved, v_new, v)).abs()
        v, g = torch.where(improved, v_new, v), torch.where(improved[:, None], g_new, g)
        active = active & (change > tol * (1 + v.abs()))[:, None]  # a row stops once it stops improving
        if not bool(active.any()):
            break
    return x.detach(), v


def _grid() -> torch.Tensor:
    mesh = np.meshgrid(GRID["a"], GRID["b"], GRID["e"], GRID["alpha"], GRID["beta"], indexing="ij")
    return torch.tensor(np.stack([m.ravel() for m in mesh], axis=1), dtype=torch.float64)


def fit_law(N, D, L, starts: int = 32, init: list | None = None, max_iter: int = 150) -> LawFit:
    """Approach 3: L-BFGS from the `starts` best grid points (and any `init` thetas); the lowest objective wins."""
    N, D, L = (np.asarray(x, dtype=np.float64) for x in (N, D, L))
    if len(N) < 5:
        raise ValueError(f"fitting L(N, D) needs at least 5 points (5 parameters), got {len(N)}")
    logN, logD, logL = (torch.tensor(np.log(x)) for x in (N, D, L))
    grid = _grid()
    with torch.no_grad():
        order = torch.argsort(_objective(grid, logN, logD, logL))
    cands = torch.cat([grid[order[:starts]], torch.tensor(init or [], dtype=torch.float64).reshape(-1, 5)])
    theta, vals = batched_lbfgs(lambda t: _objective(t, logN, logD, logL), cands, max_iter=max_iter)
    ok = torch.isfinite(vals) & (theta[:, 3] > 0) & (theta[:, 4] > 0)
    if not bool(ok.any()):
        raise ValueError("the L(N, D) fit did not converge from any start (is the loss falling with N and D?)")
    i = int(torch.where(ok, vals, torch.full_like(vals, math.inf)).argmin())
    best, best_val = theta[i], float(vals[i])
    a, b, e, al, be = best.tolist()
    return LawFit(math.exp(e), math.exp(a), math.exp(b), al, be, best_val)


def bootstrap_laws(N, D, L, law: LawFit, n: int, rng, starts: int = 3) -> list[LawFit]:
    """`n` refits on resamples of the points (drawn with replacement, as counts per point), all solved in one
    batched L-BFGS: each resample starts from the full fit and from the `starts` best grid points."""
    if n <= 0:
        return []
    logN, logD, logL = (torch.tensor(np.log(np.asarray(x, dtype=np.float64))) for x in (N, D, L))
    m = len(L)
    counts = torch.tensor(np.stack([np.bincount(rng.integers(0, m, m), minlength=m) for _ in range(n)]),
                          dtype=torch.float64)
    grid = _grid()
    with torch.no_grad():
        top = grid[torch.argsort(_objective(grid, logN, logD, logL))[:starts]]
    theta0 = torch.cat([torch.tensor([_theta(law)], dtype=torch.float64), top])  # (1 + starts, 5)
    k = len(theta0)
    weights = counts.repeat_interleave(k, dim=0)
    theta, vals = batched_lbfgs(lambda t: _objective(t, logN, logD, logL, weights), theta0.repeat(n, 1))
    theta, vals = theta.reshape(n, k, 5), vals.reshape(n, k)
    vals = torch.where(torch.isfinite(vals) & (theta[..., 3] > 0) & (theta[..., 4] > 0), vals,
                       torch.full_like(vals, math.inf))
    out = []
    for i in range(n):
        j = int(vals[i].argmin())
        if math.isfinite(float(vals[i, j])) and int((counts[i] > 0).sum()) >= 5:
            a, b, e, al, be = theta[i, j].tolist()
            if max(a, b, e) > 700:  # ran off to A or B = ∞ (a degenerate resample): no fit
                continue
            out.append(LawFit(math.exp(e), math.exp(a), math.exp(b), al, be, float(vals[i, j])))
    return out


def _theta(f: LawFit) -> list:
    return [math.log(f.A), math.log(f.B), math.log(f.E), f.alpha, f.beta]


# ---- approach 2 -------------------------------------------------------------------------------------------

def isoflop_minima(rows: list[dict], n_key: str) -> list[dict]:
    """Per IsoFLOP budget with ≥ 3 sizes: the parabola vertex in log N (N_opt, its loss, D_opt)."""
    by_c: dict[float, list[dict]] = {}
    for r in rows:
        if r.get("compute_budget"):
            by_c.setdefault(float(r["compute_budget"]), []).append(r)
    out = []
    for C, rs in sorted(by_c.items()):
        xs = np.log([r[n_key] for r in rs])
        if len(set(xs.round(9))) < 3:
            continue
        c2, c1, c0 = np.polyfit(xs, [r["val_loss"] for r in rs], 2)
        if c2 <= 0:  # no minimum: the curve bends the wrong way
            out.append({"C": C, "n_opt": None, "points": len(rs)})
            continue
        x = -c1 / (2 * c2)
        n_opt = math.exp(x)
        fpt = np.mean([r["flops"] / r["tokens"] / r[n_key] for r in rs])  # FLOPs per token per parameter
        out.append({"C": C, "n_opt": n_opt, "d_opt": C / (fpt * n_opt), "loss_opt": c0 + c1 * x + c2 * x * x,
                    "coef": [c2, c1, c0], "inside": bool(xs.min() <= x <= xs.max()), "points": len(rs)})
    return out


def power_law(Cs, Ys) -> tuple[float, float]:
    """Y = k C^p by least squares in log-log: returns (p, k)."""
    p, logk = np.polyfit(np.log(Cs), np.log(Ys), 1)
    return float(p), float(math.exp(logk))


def approach2(rows: list[dict], n_key: str) -> dict | None:
    mins = [m for m in isoflop_minima(rows, n_key) if m.get("n_opt")]
    if len(mins) < 2:
        return None
    a, kN = power_law([m["C"] for m in mins], [m["n_opt"] for m in mins])
    b, kD = power_law([m["C"] for m in mins], [m["d_opt"] for m in mins])
    return {"minima": mins, "a": a, "kN": kN, "b": b, "kD": kD}


# ---- the whole fit ----------------------------------------------------------------------------------------

def _pct(xs, lo=5, hi=95) -> list:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return [float(np.percentile(xs, lo)), float(np.percentile(xs, hi))] if xs else [None, None]


def fit_rows(rows: list[dict], n_key: str = "params_matmul", bootstrap: int = 100, seed: int = 0,
             starts: int = 32) -> dict:
    """Approach 3 (+ approach 2 when the rows hold IsoFLOP curves) with bootstrap 90% intervals."""
    if not rows:
        raise ValueError("no finished points to fit")
    missing = [k for k in (n_key, "tokens", "val_loss", "flops") if k not in rows[0]]
    if missing:
        raise ValueError(f"rows lack {', '.join(missing)}: not a scaling sweep's points.jsonl")
    N = np.array([r[n_key] for r in rows], dtype=float)
    D = np.array([r["tokens"] for r in rows], dtype=float)
    L = np.array([r["val_loss"] for r in rows], dtype=float)
    law = fit_law(N, D, L, starts=starts)
    C_max = max(r["flops"] for r in rows)
    rng = np.random.default_rng(seed)
    boots = bootstrap_laws(N, D, L, law, bootstrap, rng)
    boots2 = []
    by_c: dict = {}
    for r in rows:
        if r.get("compute_budget"):
            by_c.setdefault(r["compute_budget"], []).append(r)
    for _ in range(bootstrap if by_c else 0):
        a2 = approach2([rs[i] for rs in by_c.values() for i in rng.integers(0, len(rs), len(rs))], n_key)
        if a2:
            boots2.append(a2)
    residual = np.log(law.loss(N, D)) - np.log(L)
    result = {
        "n_key": n_key, "points": len(rows), "C_max": C_max,
        "approach3": {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta, "a": law.a,
                      "b": law.b, "objective": law.objective,
                      "rms_log_residual": float(np.sqrt(np.mean(residual ** 2))),
                      "tokens_per_param": {f"{C:.3g}": law.tokens_per_param(C) for C in (C_max, 10 * C_max, 100 * C_max)},
                      "ci90": {k: _pct([getattr(f, k) for f in boots]) for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
                      | {"tokens_per_param@C_max": _pct([f.tokens_per_param(C_max) for f in boots])},
                      "bootstrap": len(boots)},
        "approach2": None,
    }
    bpb = [r["val_loss"] / math.log(2) / r["val_bpb"] for r in rows if r.get("val_bpb")]
    if bpb:
        result["bytes_per_token"] = float(np.median(bpb))
    a2 = approach2(rows, n_key)
    if a2:
        result["approach2"] = {**a2, "ci90": {k: _pct([x[k] for x in boots2]) for k in ("a", "b")},
                               "bootstrap": len(boots2)}
    return result


def law_from(fit: dict) -> LawFit:
    p = fit["approach3"]
    return LawFit(p["E"], p["A"], p["B"], p["alpha"], p["beta"], p.get("objective", float("nan")))


def predict(fit: dict, N: float, D: float) -> dict:
    """The fitted loss for N parameters (of the fit's kind, fit['n_key']) trained on D tokens."""
    loss = float(law_from(fit).loss(N, D))
    out = {"loss": loss, "fit": fit["n_key"]}
    if fit.get("bytes_per_token"):
        out["bpb"] = loss / math.log(2) / fit["bytes_per_token"]
    return out


def load_fit(path: str | Path) -> dict:
    path = Path(path)
    f = path / "fit.json" if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"{path}: no fit.json (run `zerollm scaling fit DIR` first)")
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: invalid JSON ({e})") from None


__all__ = ["LawFit", "fit_law", "fit_rows", "isoflop_minima", "approach2", "power_law", "predict", "law_from",
           "load_fit", "bootstrap_laws", "batched_lbfgs", "DELTA"]
