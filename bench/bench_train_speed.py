"""Training throughput: zerollm's loop vs Hugging Face GPT2LMHeadModel, same shape, batch and AdamW step.

Shape: nanoGPT's CPU recipe, char-level tiny Shakespeare, 4 layers x 128 wide x 4 heads, context 64,
batch 12, AdamW, grad clip 1.0. Each side runs `--steps` optimizer steps after a warm-up; repeats are
interleaved (ours, theirs, ours, ...) so machine noise hits both; medians are reported.

    python bench/bench_train_speed.py [--steps 200] [--repeats 3] [--compile]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CharData, machine, median  # noqa: E402

from zerollm.config import ModelConfig  # noqa: E402
from zerollm.model.transformer import Transformer  # noqa: E402
from zerollm.objectives import LMObjective  # noqa: E402
from zerollm.train.loop import TrainConfig, train  # noqa: E402

B, T = 12, 64


def ours(steps: int, compile_: bool) -> float:
    data = CharData(B, T)
    cfg = ModelConfig(vocab_size=data.vocab_size, n_layer=4, n_head=4, d_model=128, max_seq_len=T)
    torch.manual_seed(0)
    model = Transformer(cfg)
    tc = TrainConfig(steps=steps, batch_size=B, seq_len=T, lr=1e-3, warmup_steps=0, eval_every=0,
                     eval_at_start=False, ckpt_every=-1, log_every=10**9, progress=False, compile=compile_,
                     beta2=0.99, weight_decay=0.1, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        train(model, LMObjective(), data, TrainConfig(**{**tc.__dict__, "steps": 10}), d, model_cfg=cfg)  # warm-up
        t0 = time.perf_counter()
        train(model, LMObjective(), data, tc, d, model_cfg=cfg)
        return steps * B * T / (time.perf_counter() - t0)


def hf(steps: int) -> float:
    from transformers import GPT2Config, GPT2LMHeadModel

    data = CharData(B, T)
    cfg = GPT2Config(vocab_size=data.vocab_size, n_positions=T, n_embd=128, n_layer=4, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def run(n):
        for _ in range(n):
            x, y = data.next_batch()
            loss = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    run(10)
    t0 = time.perf_counter()
    run(steps)
    return steps * B * T / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time zerollm with torch.compile")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    rows: dict[str, list[float]] = {"zerollm": [], "transformers GPT2LMHeadModel": []}
    if args.compile:
        rows["zerollm + torch.compile"] = []
    for _ in range(args.repeats):
        rows["zerollm"].append(ours(args.steps, False))
        rows["transformers GPT2LMHeadModel"].append(hf(args.steps))
        if args.compile:
            rows["zerollm + torch.compile"].append(ours(args.steps, True))
    base = median(rows["transformers GPT2LMHeadModel"])
    print(f"{'':32s} {'tokens/s (median)':>18s} {'vs HF':>7s}   runs")
    for name, xs in rows.items():
        print(f"{name:32s} {median(xs):18,.0f} {median(xs) / base:6.2f}x   {', '.join(f'{x:,.0f}' for x in xs)}")


if __name__ == "__main__":
    main()
