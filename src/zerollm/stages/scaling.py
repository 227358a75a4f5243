"""`zerollm scaling sweep | fit` and `zerollm estimate`: scaling laws on your own data, and a run's plan.

    zerollm scaling sweep --data SHARDS --out DIR [--plan isoflop --flops 1e10 --flops 3e10 | --plan grid
                          --tokens 1M --tokens 4M] [--depths 1 --depths 2 ...] [--workers N]
    zerollm scaling fit DIR [--out FIT_DIR] [--bootstrap 100]
    zerollm estimate (--params 7B | --preset NAME | --config FILE | --model DIR) --tokens 2T
                     [--devices 8 --accelerator h100 --mfu 0.4 --price 2.5] [--measure] [--from-fit DIR]

The sweep, the fit and the estimator live in zerollm/scaling/ (sweep.py, fit.py, report.py, estimate.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import atomic_write_json, atomic_write_text
from zerollm.scaling.estimate import (format_estimate, measure_mfu, parse_count, peak_flops_for, size_from_config,
                                      size_from_count)
from zerollm.scaling.fit import fit_rows, load_fit, predict
from zerollm.scaling.report import plot_compute, plot_isoflop, plot_optimal, report_text
from zerollm.scaling.sweep import SweepConfig, read_rows, run_sweep


@dataclass
class ScalingFitConfig:
    sweep: str = field(default="", metadata={"positional": True, "help": "a `scaling sweep` directory"})
    out: str | None = field(default=None, metadata={"help": "where fit.json, fit.md and the plots go (default: DIR)"})
    n_key: str = field(default="params_matmul", metadata={
        "choices": ("params_matmul", "params", "params_non_embedding"),
        "help": "which parameter count is N (default: the weights in matmuls, the N of C = 6ND)"})
    bootstrap: int = 100
    seed: int = 0


@dataclass
class EstimateConfig:
    params: str | None = field(default=None, metadata={"help": "a bare parameter count, e.g. 7B"})
    preset: str | None = None
    config: str | None = field(default=None, metadata={"help": "a ModelConfig as .json or .yaml"})
    model: str | None = field(default=None, metadata={"help": "checkpoint, run or Hugging Face model directory"})
    tokens: str = field(default="", metadata={"required": True, "help": "training tokens, e.g. 300B"})
    seq_len: int | None = None
    micro_batch: int = field(default=1, metadata={"help": "sequences per device per micro-step (activations)"})
    devices: int = 8
    accelerator: str = field(default="h100", metadata={"help": "h100, a100, l4, 4090, ... or cpu (measured here)"})
    mfu: float = 0.4
    price: float | None = field(default=None, metadata={"help": "$ per device-hour"})
    precision: str = field(default="mixed", metadata={"choices": ("mixed", "fp32", "bf16")})
    measure: bool = field(default=False, metadata={"help": "time a few training steps here for the MFU"})
    from_fit: str | None = field(default=None, metadata={"help": "a `scaling fit` directory: predict the loss"})


def scaling_sweep(cfg: SweepConfig | None = None, progress: bool = True, **kw) -> list[dict]:
    """Train every point of the sweep not yet done; returns all rows (see scaling/sweep.py)."""
    return run_sweep(cfg or SweepConfig(**kw), progress=progress)


def scaling_fit(sweep: str | Path, out: str | Path | None = None, n_key: str = "params_matmul",
                bootstrap: int = 100, seed: int = 0) -> dict:
    """Fit a sweep's rows; writes fit.json, fit.md and three PNGs to `out` (default: the sweep dir)."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise FileNotFoundError(f"{sweep}: no such sweep directory")
    rows = read_rows(sweep)
    if not rows:
        raise ValueError(f"{sweep}: no finished points (points.jsonl is missing or empty); run `zerollm scaling "
                         f"sweep --out {sweep}` first")
    if len(rows) < 5:
        raise ValueError(f"{sweep}: {len(rows)} finished points; the L(N, D) fit needs at least 5")
    fit = fit_rows(rows, n_key=n_key, bootstrap=bootstrap, seed=seed)
    out = Path(out) if out else sweep
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "fit.json", fit)
    plot_compute(rows, fit, out / "scaling_compute.png")
    plot_isoflop(rows, fit, out / "scaling_isoflop.png")
    plot_optimal(fit, out / "scaling_optimal.png")
    atomic_write_text(out / "fit.md", report_text(rows, fit, str(sweep)))
    return fit


def _model_size(c: EstimateConfig):
    given = [k for k in ("params", "preset", "config", "model") if getattr(c, k)]
    if len(given) != 1:
        raise ValueError("give exactly one of --params, --preset, --config, --model" +
                         (f" (got {', '.join('--' + g for g in given)})" if given else ""))
    if c.params:
        return size_from_count(parse_count(c.params), seq_len=c.seq_len or 4096), None
    from zerollm.config import ModelConfig, model_config_from_preset

    if c.preset:
        cfg = model_config_from_preset(c.preset)
    elif c.config:
        import yaml

        path = Path(c.config)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model config file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML/JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of ModelConfig fields")
        cfg = ModelConfig.from_dict(data.get("model", data))
    else:
        from zerollm.interop.hf import is_hf_dir, read_hf_config
        from zerollm.interop.hf_arch import config_from_hf
        from zerollm.loading import load_model_config, resolve_checkpoint

        ckpt = resolve_checkpoint(c.model)
        if is_hf_dir(ckpt):
            cfg = config_from_hf(read_hf_config(ckpt), str(ckpt / "config.json"))
        else:
            cfg = load_model_config(ckpt)
    return size_from_config(cfg, name=c.preset or c.config or c.model, seq_len=c.seq_len), cfg


def estimate(cfg: EstimateConfig | None = None, **kw) -> str:
    """The plan for one run as text: FLOPs, memory per device, time, cost, and a loss from a fit."""
    c = cfg or EstimateConfig(**kw)
    tokens = parse_count(c.tokens, "token count")
    if tokens <= 0:
        raise ValueError(f"--tokens must be positive, got {c.tokens!r}")
    if c.devices < 1 or c.micro_batch < 1:
        raise ValueError("--devices and --micro-batch must be at least 1")
    size, model_cfg = _model_size(c)
    peak = peak_flops_for(c.accelerator)
    mfu, source = c.mfu, "assumed"
    if c.measure:
        if model_cfg is None:
            from zerollm.config import ModelConfig
            from zerollm.scaling.estimate import llama_like_shape

            model_cfg = ModelConfig(**{k: v for k, v in llama_like_shape(size.params).items()}, vocab_size=32000,
                                    mlp="swiglu", norm="rmsnorm", position="rope", bias=False)
        if size.params > 2e8:
            raise ValueError(f"--measure trains the model here on the CPU; {size.params / 1e6:.0f}M parameters "
                             "is too big (at most 200M): leave out --measure and give --mfu")
        m = measure_mfu(model_cfg, seq_len=min(model_cfg.max_seq_len, 128))
        mfu, source = m["mfu"], f"measured here: {m['tok_per_s']:,.0f} tokens/s vs {m['peak'] / 1e9:.0f} GFLOP/s"
        if c.accelerator.lower() not in ("cpu", "here", "this"):
            source += " (a CPU MFU; GPUs reach other MFUs)"
    predicted = None
    if c.from_fit:
        fit = load_fit(c.from_fit)
        N = getattr(size, fit["n_key"], size.params_matmul)
        predicted = predict(fit, N, tokens)
    return format_estimate(size, tokens, devices=c.devices, accelerator=c.accelerator, peak=peak, mfu=mfu,
                           mfu_source=source, price=c.price, micro_batch=c.micro_batch, precision=c.precision,
                           predicted=predicted)


def fit_summary(fit: dict) -> str:
    p = fit["approach3"]
    tpp = next(iter(p["tokens_per_param"].values()))
    line = (f"L(N, D) = {p['E']:.3f} + {p['A']:.4g}/N^{p['alpha']:.3f} + {p['B']:.4g}/D^{p['beta']:.3f}; "
            f"N_opt ∝ C^{p['a']:.2f}; {tpp:.1f} tokens/param at C = {fit['C_max']:.2g}")
    if fit.get("approach2"):
        line += f"; IsoFLOP: N_opt ∝ C^{fit['approach2']['a']:.2f}"
    return line


__all__ = ["SweepConfig", "ScalingFitConfig", "EstimateConfig", "scaling_sweep", "scaling_fit", "estimate",
           "fit_summary"]
