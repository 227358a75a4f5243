"""Quality per compute on char-level tiny Shakespeare: nanoGPT's CPU recipe vs zerollm's improved recipe.

nanoGPT's documented CPU run (README, "I only have a macbook"): GPT-2 blocks, 4 layers x 128 x 4 heads,
context 64, batch 12, AdamW lr 1e-3 (betas 0.9/0.99, wd 0.1), 100 warm-up steps, cosine to 1e-4 over 2000
iterations, dropout 0 → validation loss ≈ 1.88. `nanogpt` is that recipe (configs/nanogpt-char.yaml) run
in zerollm's loop, the in-run stand-in for nanoGPT; `improved` is ours (configs/improved-char.yaml). Both are trained in this one process, one after the other,
and scored on the same 200 fixed validation batches; training wall time excludes the scoring.

    python bench/bench_quality.py [--recipes nanogpt,improved]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, CharData, machine  # noqa: E402

from zerollm.config import load_config, model_config_from_preset  # noqa: E402
from zerollm.stages.pretrain import PretrainConfig  # noqa: E402
from zerollm.model.transformer import Transformer  # noqa: E402
from zerollm.objectives import LMObjective, evaluate_lm  # noqa: E402
from zerollm.train.loop import train  # noqa: E402

TARGET = 1.886
CONFIGS = REPO / "configs"
RECIPES = {"nanogpt": CONFIGS / "nanogpt-char.yaml", "improved": CONFIGS / "improved-char.yaml"}


def fixed_val_batches(n: int, batch: int, ctx: int):
    val = CharData(batch, ctx, seed=2024, split="val")
    return [val.next_batch() for _ in range(n)]


def run_recipe(name: str, yaml_path: Path, val_batches, seed: int = 1337, overrides: list[str] | None = None) -> dict:
    """Train the recipe in `yaml_path` (a PretrainConfig) on char-level Shakespeare; score on `val_batches`."""
    pc = load_config(PretrainConfig, yaml_path, overrides)
    tc = pc.train
    data = CharData(tc.batch_size, tc.seq_len, seed=seed)
    cfg = model_config_from_preset(pc.preset, **{**pc.model, "vocab_size": data.vocab_size, "max_seq_len": tc.seq_len})
    torch.manual_seed(seed)
    model = Transformer(cfg)
    tc.eval_every, tc.eval_at_start, tc.ckpt_every, tc.log_every = 0, False, -1, 100
    tc.progress, tc.device, tc.seed = False, "cpu", seed
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        summary = train(model, LMObjective(), data, tc, d, model_cfg=cfg)
        wall = time.perf_counter() - t0
    val = evaluate_lm(model, val_batches)["val_loss"]
    return {"name": name, "val_loss": val, "wall_s": wall, "steps": summary["steps"],
            "params": model.num_params(), "tok_s": summary["median_tok_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default="nanogpt,improved")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("overrides", nargs="*", help="dotted overrides applied to the improved recipe")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    val_batches = fixed_val_batches(200, 12, 64)
    results = [run_recipe(n, RECIPES[n], val_batches, args.seed, args.overrides if n == "improved" else None)
               for n in args.recipes.split(",")]
    print(f"{'recipe':10s} {'params':>8s} {'steps':>6s} {'tok/s':>8s} {'wall s':>7s} {'val loss':>9s} {'bpc':>6s}")
    for r in results:
        print(f"{r['name']:10s} {r['params']:8,d} {r['steps']:6d} {r['tok_s']:8,.0f} {r['wall_s']:7.1f} "
              f"{r['val_loss']:9.4f} {r['val_loss'] / math.log(2):6.3f}")
    by = {r["name"]: r for r in results}
    if "nanogpt" in by and "improved" in by:
        ratio = by["improved"]["wall_s"] / by["nanogpt"]["wall_s"]
        ok = by["improved"]["val_loss"] <= TARGET
        print(f"improved/nanogpt wall time: {ratio:.0%} (goal ≤ 60%), improved val loss {by['improved']['val_loss']:.4f} "
              f"{'≤' if ok else '>'} {TARGET} target")


if __name__ == "__main__":
    main()
