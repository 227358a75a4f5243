"""A scaling fit's figures and its markdown report.

    scaling_compute.png   loss vs training FLOPs, every point coloured by size, the empirical frontier (the
                          lowest loss reached at or below each compute) and the fitted law's optimal loss
    scaling_isoflop.png   loss vs parameters along each IsoFLOP curve, the fitted parabolas and their minima
    scaling_optimal.png   N_opt(C) and D_opt(C): approach 2's minima and power laws beside approach 3's
    fit.md                the fitted law, its 90% bootstrap intervals, compute-optimal tokens per parameter
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from zerollm.artifacts import pyplot, save_figure
from zerollm.scaling.fit import law_from



def plot_compute(rows: list[dict], fit: dict, png: Path) -> Path:
    plt = pyplot()
    law, n_key = law_from(fit), fit["n_key"]
    C = np.array([r["flops"] for r in rows])
    L = np.array([r["val_loss"] for r in rows])
    N = np.array([r[n_key] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    sc = ax.scatter(C, L, c=np.log10(N), cmap="viridis", s=28, zorder=3)
    fig.colorbar(sc, ax=ax, label=f"log10 {n_key}")
    order = np.argsort(C)
    front = np.minimum.accumulate(L[order])
    ax.step(C[order], front, where="post", color="k", lw=1, label="frontier (best loss at ≤ C)")
    cs = np.geomspace(C.min() / 2, C.max() * 4, 50)
    opt = [law.loss(*law.optimal(c)) for c in cs]
    ax.plot(cs, opt, "r--", lw=1.2, label="fitted L(N_opt(C), D_opt(C))")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png)


def plot_isoflop(rows: list[dict], fit: dict, png: Path) -> Path | None:
    a2 = fit.get("approach2")
    curves: dict = {}
    for r in rows:
        if r.get("compute_budget"):
            curves.setdefault(r["compute_budget"], []).append(r)
    if not curves:
        return None
    plt = pyplot()
    n_key = fit["n_key"]
    minima = {m["C"]: m for m in (a2 or {}).get("minima", [])}
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(curves)))
    for color, (C, rs) in zip(colors, sorted(curves.items())):
        rs = sorted(rs, key=lambda r: r[n_key])
        ax.plot([r[n_key] for r in rs], [r["val_loss"] for r in rs], "o", color=color, label=f"C = {C:.1e}")
        m = minima.get(float(C))
        if m:
            xs = np.linspace(math.log(rs[0][n_key]), math.log(rs[-1][n_key]), 50)
            ax.plot(np.exp(xs), np.polyval(m["coef"], xs), "-", color=color, lw=1)
            ax.plot([m["n_opt"]], [m["loss_opt"]], "*", color=color, ms=12, mec="k")
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters ({n_key})")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("IsoFLOP curves (★ parabola minimum)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png)


def plot_optimal(fit: dict, png: Path) -> Path:
    plt = pyplot()
    law, a2 = law_from(fit), fit.get("approach2")
    lo = min([m["C"] for m in a2["minima"]] if a2 else [fit["C_max"] / 10])
    cs = np.geomspace(lo / 3, fit["C_max"] * 100, 50)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for ax, idx, what in ((axes[0], 0, "N_opt (parameters)"), (axes[1], 1, "D_opt (tokens)")):
        ax.plot(cs, [law.optimal(c)[idx] for c in cs], "r--", label=f"approach 3: ∝ C^{(law.a, law.b)[idx]:.2f}")
        if a2:
            key, p, k = ("n_opt", a2["a"], a2["kN"]) if idx == 0 else ("d_opt", a2["b"], a2["kD"])
            ax.plot([m["C"] for m in a2["minima"]], [m[key] for m in a2["minima"]], "ko", label="IsoFLOP minima")
            ax.plot(cs, k * cs ** p, "k-", lw=1, label=f"approach 2: ∝ C^{p:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_title(what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png)


def _ci(ci: list, fmt: str = "{:.3g}") -> str:
    return "—" if not ci or ci[0] is None else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def report_text(rows: list[dict], fit: dict, sweep: str) -> str:
    p, a2 = fit["approach3"], fit.get("approach2")
    ci = p["ci90"]
    tpp = p["tokens_per_param"]
    c_max = next(iter(tpp))
    lines = [f"# Scaling fit of `{sweep}`", "",
             f"{fit['points']} points; N = `{fit['n_key']}`, D = training tokens, L = validation loss (nats/token).", "",
             "## Approach 3: L(N, D) = E + A/N^α + B/D^β (Huber δ=1e-3 on log L, L-BFGS from Chinchilla's grid)", "",
             "| | fit | 90% bootstrap interval |", "|---|---|---|"]
    for k, name in (("E", "E"), ("A", "A"), ("B", "B"), ("alpha", "α"), ("beta", "β"), ("a", "a = β/(α+β): N_opt ∝ C^a"),
                    ("b", "b = α/(α+β): D_opt ∝ C^b")):
        lines.append(f"| {name} | {p[k]:.4g} | {_ci(ci.get(k))} |")
    lines += ["", f"RMS of log-loss residuals: {p['rms_log_residual']:.4f} ({p['bootstrap']} bootstrap refits).", "",
              "Compute-optimal tokens per parameter (C = 6ND): " + ", ".join(
                  f"{v:.1f} at C = {float(c):.2g}" for c, v in tpp.items())
              + f"; 90% interval at C = {float(c_max):.2g}: {_ci(ci.get('tokens_per_param@C_max'), '{:.1f}')} "
              "(Chinchilla found ≈ 20 on MassiveText)."]
    if a2:
        lines += ["", "## Approach 2: IsoFLOP parabolas", "", "| C | points | N_opt | D_opt | D/N | min inside sampled N |",
                  "|---|---|---|---|---|---|"]
        for m in a2["minima"]:
            lines.append(f"| {m['C']:.2e} | {m['points']} | {m['n_opt']:,.0f} | {m['d_opt']:,.0f} | "
                         f"{m['d_opt'] / m['n_opt']:.1f} | {'yes' if m['inside'] else 'no (extrapolated)'} |")
        c2 = a2["ci90"]
        lines += ["", f"N_opt ∝ C^{a2['a']:.3f} (90%: {_ci(c2['a'])}), D_opt ∝ C^{a2['b']:.3f} (90%: {_ci(c2['b'])}); "
                  f"Chinchilla: a ≈ b ≈ 0.5."]
    else:
        lines += ["", "## Approach 2: IsoFLOP parabolas", "",
                  "Not fitted: fewer than two IsoFLOP budgets have ≥ 3 sizes whose losses bend upward on both sides "
                  "(a minimum). Add sizes on both sides of the best one, or larger budgets."]
    wide = ci.get("alpha", [None])[0] is not None and (ci["alpha"][1] - ci["alpha"][0] > 0.5 * max(p["alpha"], 1e-9))
    lines += ["", "## How sure", "",
              ("The exponents are poorly determined (the α interval is wider than half of α): more sizes or budgets "
               "would narrow them." if wide else "The exponents' intervals are narrow relative to their values.")
              + " Intervals come from refitting on resampled points, so they cover the noise between runs, not the "
              "error of extrapolating far beyond the sweep's sizes and budgets.", "",
              "![loss vs compute](scaling_compute.png)", ""]
    if a2:
        lines += ["![IsoFLOP curves](scaling_isoflop.png)", ""]
    lines += ["![N_opt and D_opt](scaling_optimal.png)", "", f"Reproduce: `zerollm scaling fit {sweep}`", ""]
    return "\n".join(lines)


__all__ = ["plot_compute", "plot_isoflop", "plot_optimal", "report_text"]
