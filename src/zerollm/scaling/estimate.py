"""Plan a training run before paying for it: compute, memory per device, time and cost.

    C  = 6 N D + 12 L H d_h T D            training FLOPs (forward + backward)
         N: weights in matmuls (non-embedding + the output projection), D: tokens, T: context
         6 = 2 (multiply-add) x 3 (backward costs twice the forward); the second term is attention's q.k and
         a.v products (PaLM, Chowdhery et al. 2022, app. B) — the same count as Transformer.flops_per_token.
    time = C / (devices x peak FLOP/s x MFU)        cost = time x devices x $/device-hour

Memory per device (bytes), for N parameters trained with AdamW:
    mixed precision (ZeRO paper, Rajbhandari et al. 2020 §3.1): 2 (bf16 weights) + 2 (bf16 grads)
        + 12 (fp32 master weights, Adam m, Adam v) = 16 bytes/param
    fp32: 4 + 4 + 8 = 16 bytes/param;  bf16 (pure, bf16 Adam states): 2 + 2 + 4 = 8 bytes/param
    DDP keeps all of it on every device; FSDP / ZeRO-3 shards weights, grads and optimizer state over the n
    devices (each holds 1/n; the one layer gathered at a time is left out).
    activations (Korthikanti et al. 2022, "Reducing Activation Recomputation", eq. 2, 16-bit activations, with
    a fused attention kernel so no T x T score matrix is kept): 34 T b d bytes per layer for b sequences of T
    tokens, plus the fp32 logits and their gradient (8 T b V). With activation checkpointing only each
    layer's input is kept (2 T b d per layer) and one layer's full activations live during its recompute.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from zerollm.config import ModelConfig

GiB = 1024 ** 3

# Peak dense (no sparsity) bf16 tensor FLOP/s per device, from the vendors' datasheets:
#   NVIDIA H100 SXM / H200 SXM datasheets (989.4 TF bf16 dense; "1979 TF with sparsity"), H100 PCIe (756 TF);
#   NVIDIA A100 datasheet (312 TF bf16); NVIDIA L4 datasheet (242 TF with sparsity -> 121 dense);
#   NVIDIA L40S datasheet (733 TF with sparsity -> 362 dense); NVIDIA Ada Lovelace whitepaper, RTX 4090
#   (165.2 TF fp16/bf16 with fp32 accumulate, dense); Ampere GA102 whitepaper, RTX 3090 (71 TF, fp32 acc.);
#   NVIDIA A10 datasheet (125 TF bf16 dense); NVIDIA Blackwell datasheet, B200 (2.25 PF dense bf16);
#   AMD Instinct MI300X datasheet (1307 TF bf16 dense); Google Cloud TPU docs: v4 275 TF, v5e 197 TF, v5p 459 TF.
PEAK_BF16_FLOPS: dict[str, float] = {
    "h100": 989.4e12, "h100-pcie": 756e12, "h200": 989.4e12, "b200": 2250e12, "a100": 312e12,
    "a10": 125e12, "l4": 121e12, "l40s": 362e12, "4090": 165.2e12, "3090": 71e12, "mi300x": 1307e12,
    "tpu-v4": 275e12, "tpu-v5e": 197e12, "tpu-v5p": 459e12,
}

# bytes per parameter: (weights, gradients, optimizer state incl. any fp32 master copy)
PRECISIONS = {"mixed": (2, 2, 12), "fp32": (4, 4, 8), "bf16": (2, 2, 4)}


def parse_count(text: str | int | float, what: str = "parameter count") -> int:
    """'7B' / '124M' / '300B' / '1.5e9' / '2T' -> an integer count."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBtT]?)\s*", str(text))
    if not m:
        raise ValueError(f"cannot parse a {what} from {text!r} (e.g. 7B, 124M, 300B, 1.5e9)")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()])


def llama_like_shape(n_params: int) -> dict:
    """A plausible (n_layer, d_model, n_head, n_kv_head, head_dim) for a bare parameter count: the Llama-2 /
    GPT-2 shape when it matches, else d_model from N ≈ 12 L d² with L = d / 128."""
    known = {7e9: (32, 4096, 32), 13e9: (40, 5120, 40), 70e9: (80, 8192, 8), 124e6: (12, 768, 12),
             1.1e9: (22, 2048, 4), 8e9: (32, 4096, 8), 175e9: (96, 12288, 96)}
    for n, (L, d, kv) in known.items():
        if abs(n_params - n) / n < 0.05:
            hd = 128 if d >= 2048 else 64
            return {"n_layer": L, "d_model": d, "n_head": d // hd, "n_kv_head": kv, "head_dim": hd}
    d = int(round((n_params * 128 / 12) ** (1 / 3) / 64)) * 64 or 64
    return {"n_layer": max(1, d // 128), "d_model": d, "n_head": max(1, d // 128), "n_kv_head": max(1, d // 128),
            "head_dim": 128}


@dataclass
class ModelSize:
    """What the estimator needs of a model: its counts and the shape the attention and activation terms use."""
    name: str
    params: int  # every distinct parameter
    params_non_embedding: int  # Kaplan et al.'s N
    params_matmul: int  # weights in matmuls: non-embedding + the output projection (the N of C = 6ND)
    n_layer: int
    d_model: int
    n_head: int
    head_dim: int
    vocab_size: int
    seq_len: int

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """6 N + 12 L H d_h T: as Transformer.flops_per_token."""
        T = self.seq_len if seq_len is None else seq_len
        return 6 * self.params_matmul + 12 * self.n_layer * self.n_head * self.head_dim * T


def size_from_config(cfg: ModelConfig, name: str = "", seq_len: int | None = None) -> ModelSize:
    """Counts from the model itself (built on the meta device: no memory), via Transformer.num_params."""
    from zerollm.model.transformer import Transformer

    with torch.device("meta"):
        m = Transformer(cfg)
    n, n_ne = m.num_params(), m.num_params(non_embedding=True)
    matmul = n_ne + (cfg.vocab_size * cfg.d_model if m.lm_head is None else 0)
    return ModelSize(name or f"{cfg.n_layer} x {cfg.d_model} transformer", n, n_ne, matmul, cfg.n_layer, cfg.d_model, cfg.n_head,
                     cfg.head_dim, cfg.vocab_size, seq_len or cfg.max_seq_len)


def size_from_count(n_params: int, seq_len: int = 4096, vocab_size: int = 32000) -> ModelSize:
    """A bare parameter count: all of it counted as matmul weights (as the published 6ND figures do)."""
    s = llama_like_shape(n_params)
    return ModelSize(f"{n_params / 1e9:.3g}B params" if n_params >= 1e9 else f"{n_params / 1e6:.3g}M params",
                     n_params, n_params, n_params, s["n_layer"], s["d_model"], s["n_head"], s["head_dim"],
                     vocab_size, seq_len)


def training_flops(size: ModelSize | int, tokens: float, seq_len: int | None = None,
                   attention: bool = True) -> float:
    """C = 6 N D (+ the attention term when `size` has a shape and `attention`)."""
    if isinstance(size, int):
        return 6.0 * size * tokens
    if not attention:
        return 6.0 * size.params_matmul * tokens
    return size.flops_per_token(seq_len) * float(tokens)


def memory_per_device(size: ModelSize, *, micro_batch: int = 1, seq_len: int | None = None,
                      precision: str = "mixed", devices: int = 1, sharding: str = "ddp",
                      checkpointing: bool = False) -> dict:
    """Bytes per device: weights, grads, optimizer, activations, total (see the module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if sharding not in ("ddp", "fsdp"):
        raise ValueError(f"unknown sharding {sharding!r}; expected ddp or fsdp")
    if devices < 1:
        raise ValueError(f"devices must be at least 1, got {devices}")
    T, b, d, L = seq_len or size.seq_len, micro_batch, size.d_model, size.n_layer
    w, g, o = (x * size.params for x in PRECISIONS[precision])
    if sharding == "fsdp":
        w, g, o = w / devices, g / devices, o / devices
    per_layer = 34 * T * b * d  # Korthikanti et al. 2022, eq. 2 with a fused attention kernel
    logits = 8 * T * b * size.vocab_size  # fp32 logits + their gradient
    act = (2 * T * b * d * L + per_layer if checkpointing else per_layer * L) + logits
    return {"weights": w, "grads": g, "optimizer": o, "activations": act, "total": w + g + o + act}


def peak_flops_for(accelerator: str) -> float:
    """Peak dense bf16 FLOP/s of a named accelerator, or this machine's measured fp32 matmul rate ('cpu')."""
    key = accelerator.lower().replace("nvidia", "").replace(" ", "").strip("-")
    if key in ("cpu", "here", "this"):
        from zerollm.train.report import peak_flops

        return peak_flops(torch.device("cpu"))
    if key not in PEAK_BF16_FLOPS:
        raise ValueError(f"unknown accelerator {accelerator!r}; known: cpu, {', '.join(PEAK_BF16_FLOPS)}")
    return PEAK_BF16_FLOPS[key]


def train_time_s(flops: float, *, peak: float, mfu: float, devices: int = 1) -> float:
    if not 0 < mfu <= 1:
        raise ValueError(f"MFU must be in (0, 1], got {mfu}")
    return flops / (devices * peak * mfu)


def measure_mfu(cfg: ModelConfig, *, batch_size: int = 4, seq_len: int = 128, steps: int = 8) -> dict:
    """Time `steps` real optimizer steps of `cfg` here through the one training loop (random tokens) and
    return tokens/s and the MFU against this machine's measured matmul peak (train.report.peak_flops)."""
    import tempfile

    from zerollm.model.transformer import Transformer
    from zerollm.train.loop import TrainConfig, train

    class RandomTokens:  # a batch source: next_batch / state_dict / load_state_dict
        def __init__(self):
            self.g = torch.Generator().manual_seed(0)

        def next_batch(self):
            x = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), generator=self.g)
            return x[:, :-1], x[:, 1:]

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_dict({**cfg.to_dict(), "max_seq_len": max(cfg.max_seq_len, seq_len)}))
    tc = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, warmup_steps=0, eval_every=0,
                     eval_at_start=False, ckpt_every=-1, log_every=1, progress=False, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        s = train(model, _lm_objective(), RandomTokens(), tc, tmp, model_cfg=model.cfg)
    rate = s["median_tok_per_s"]
    return {"tok_per_s": rate, "mfu": rate * s["flops_per_token"] / s["peak_flops"], "peak": s["peak_flops"]}


def _lm_objective():
    from zerollm.objectives import LMObjective

    return LMObjective()


def fmt_bytes(n: float) -> str:
    return f"{n / GiB:,.2f} GiB" if n >= GiB / 10 else f"{n / 1024 ** 2:,.1f} MiB"


def fmt_duration(s: float) -> str:
    for unit, div in (("days", 86400), ("h", 3600), ("min", 60)):
        if s >= div:
            return f"{s / div:,.1f} {unit}"
    return f"{s:.1f} s"


def format_estimate(size: ModelSize, tokens: int, *, devices: int, accelerator: str, peak: float, mfu: float,
                    mfu_source: str, price: float | None, micro_batch: int, precision: str,
                    predicted: dict | None = None) -> str:
    """The estimate as a short text report."""
    C = training_flops(size, tokens)
    lines = [f"model: {size.name}, {size.params:,} params ({size.params_non_embedding:,} non-embedding, "
             f"{size.params_matmul:,} in matmuls), {size.n_layer} layers x {size.d_model}, context {size.seq_len}",
             f"tokens: {tokens:,} ({tokens / max(1, size.params):.1f} per parameter; Chinchilla's optimum ≈ 20)",
             f"training compute: {C:.3e} FLOPs (6ND = {6.0 * size.params_matmul * tokens:.3e}, "
             f"attention {C - 6.0 * size.params_matmul * tokens:.2e})", "",
             f"memory per device ({precision} AdamW, micro-batch {micro_batch} x {size.seq_len} tokens):",
             f"{'':<22}{'weights':>12}{'grads':>12}{'optimizer':>12}{'activations':>13}{'total':>12}"]
    for sharding in ("ddp", "fsdp"):
        for ckpt in (False, True):
            m = memory_per_device(size, micro_batch=micro_batch, precision=precision, devices=devices,
                                  sharding=sharding, checkpointing=ckpt)
            label = f"{sharding.upper()} x{devices}" + (" +ckpt" if ckpt else "")
            lines.append(f"{label:<22}" + "".join(f"{fmt_bytes(m[k]):>12}" for k in
                                                  ("weights", "grads", "optimizer"))
                         + f"{fmt_bytes(m['activations']):>13}{fmt_bytes(m['total']):>12}")
    t = train_time_s(C, peak=peak, mfu=mfu, devices=devices)
    lines += ["", f"time on {devices} x {accelerator} ({peak / 1e12:,.3g} TFLOP/s peak each) at MFU {mfu:.1%} "
              f"({mfu_source}): {fmt_duration(t)} ({t / 3600 * devices:,.1f} device-hours)"]
    if price is not None:
        lines.append(f"cost at ${price:,.2f}/device-hour: ${t / 3600 * devices * price:,.0f}")
    if predicted:
        lines.append(f"predicted final loss (fit {predicted['fit']}): {predicted['loss']:.3f} nats/token"
                     + (f", {predicted['bpb']:.3f} bits/byte" if predicted.get("bpb") else ""))
    return "\n".join(lines)


__all__ = ["PEAK_BF16_FLOPS", "PRECISIONS", "ModelSize", "parse_count", "llama_like_shape", "size_from_config",
           "size_from_count", "training_flops", "memory_per_device", "peak_flops_for", "train_time_s",
           "measure_mfu", "format_estimate"]
