"""Batch-1 greedy decode speed: zerollm vs transformers `generate`, GPT-2-124M shape, fp32, CPU.

Both models hold the same random weights (copied through `zerollm.model.hf_gpt2`); both decode a 32-token
prompt into 128 new tokens greedily with a KV cache. We report the median of several timed runs after a
warm-up, check that both produce the same tokens, and print the memory-bandwidth bound: every decoded token
must read all weights once, so tokens/s <= copy bandwidth / weight bytes.

    python bench/bench_decode.py [--runs 5] [--threads 2] [--new 128] [--prompt 32]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from zerollm.config import model_config_from_preset
from zerollm.engine.generate import GenerationConfig, generate
from zerollm.model import Transformer
from zerollm.model.hf_gpt2 import to_hf_gpt2


def copy_bandwidth(nbytes: int = 512 * 2**20, reps: int = 5) -> float:
    """Bytes/s of a large tensor copy (counts the read and the write), best of `reps`."""
    src = torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best


def timed(fn, runs: int) -> tuple[float, list]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--preset", default="gpt2-124m")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = Transformer(model_config_from_preset(args.preset)).eval()
    theirs = to_hf_gpt2(ours)  # same weights, HF module layout
    ours.optimize_for_decode()  # same values; column-major storage for the widening matmuls (see its docstring)
    prompt = torch.randint(0, ours.cfg.vocab_size, (1, args.prompt)).tolist()[0]
    gen_cfg = GenerationConfig(max_new_tokens=args.new, temperature=0, stop_token_ids=[])

    def run_ours():
        return generate(ours, None, prompt, gen_cfg)

    def run_theirs():
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = theirs.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new,
                                  min_new_tokens=args.new, do_sample=False, use_cache=True, pad_token_id=0,
                                  eos_token_id=None)
        return out[0, len(prompt):].tolist()

    for fn in (run_ours, run_theirs):  # warm-up
        fn()
    # interleave the timed runs so background load on a shared machine hits both alike
    t_ours, t_theirs, tok_ours, tok_theirs = [], [], None, None
    for _ in range(args.runs):
        t, tok_ours = timed(run_ours, 1)
        t_ours.append(t)
        t, tok_theirs = timed(run_theirs, 1)
        t_theirs.append(t)
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)

    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bw = copy_bandwidth()
    bound = bw / weight_bytes
    same = tok_ours == tok_theirs
    print(f"{ours.describe()}")
    print(f"threads={args.threads}, prompt={args.prompt}, new={args.new}, greedy, fp32, runs={args.runs} (median)")
    for name, m, best in (("zerollm", m_ours, min(t_ours)), ("transformers", m_theirs, min(t_theirs))):
        print(f"{name:13s}: {args.new / m:7.1f} tok/s median ({m * 1e3 / args.new:.1f} ms/token incl. prefill), "
              f"best run {args.new / best:.1f} tok/s")
    print(f"speedup      : {m_theirs / m_ours:.2f}x median, {min(t_theirs) / min(t_ours):.2f}x best runs")
    print(f"bandwidth    : {bw / 1e9:.1f} GB/s copy; weights {weight_bytes / 1e6:.0f} MB -> bound {bound:.1f} tok/s "
          f"(zerollm at {args.new / m_ours / bound:.0%} of it)")
    print(f"same tokens  : {same}")
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(tok_ours, tok_theirs)) if a != b)
        print(f"  first difference at new token {first}: {tok_ours[first]} vs {tok_theirs[first]}")


if __name__ == "__main__":
    main()
