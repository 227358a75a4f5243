"""Batch-1 greedy decode speed: zerollm vs transformers `generate`, GPT-2-124M shape, fp32, CPU.

Both models hold the same random weights (copied through `zerollm.interop.hf.to_hf_model`); both decode a
32-token prompt into 128 new tokens greedily with a KV cache. We report the median of several timed runs after a
warm-up, check that both produce the same tokens, and print the memory-bandwidth bound: every decoded token
must read all weights once, so tokens/s <= copy bandwidth / weight bytes.

    python bench/bench_decode.py [--runs 5] [--threads 2] [--new 128] [--prompt 32]
    python bench/bench_decode.py --engine      # + int8/int4/NF4 batch 1 and Engine batch-8 aggregate
    python bench/bench_decode.py --quality     # perplexity per quantization scheme on a model trained here

`--engine` variants (model/quant.py): "native" = the native GEMV on the codes inside the native decode step;
"py blocks" = the same GEMVs with the layers run as Python modules (what the decode step saves); "cached" =
QuantLinear keeping a dequantized fp32 copy (fp32 speed, quantized storage); "aten" = torch's
`_weight_int8pack_mm` kernel. The bandwidth bound of a variant uses the bytes it actually streams per token.
`--quality` trains a small byte-level model on the embedded default corpus for `--train-seconds`, then
reports held-out perplexity per scheme and whether int8 greedy output matches fp32 for 32+ tokens.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from zerollm.config import model_config_from_preset
from zerollm.engine.generate import GenerationConfig, generate
from zerollm.interop.hf import to_hf_model
from zerollm.model import Transformer
from zerollm.engine.native import optimize_for_decode


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


def decode_args(description: str, runs: int) -> argparse.ArgumentParser:
    """The options every decode bench shares (bench_decode.py, bench_llamacpp.py)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    return ap


def streamed_bytes(m, cached: bool = False) -> int:
    """Bytes one decoded token reads: every matmul weight (quantized codes + scales, or the fp32 copy a
    `cached` QuantLinear keeps) and the output projection (the token table when tied)."""
    from zerollm.model.quant import QuantLinear

    total = 0
    for mod in m.modules():
        if isinstance(mod, QuantLinear):
            total += (mod.in_features * mod.out_features * 4 if cached else
                      sum(b.numel() * b.element_size() for b in mod.buffers(recurse=False)))
        elif isinstance(mod, torch.nn.Linear):
            total += mod.weight.numel() * mod.weight.element_size()
    if m.lm_head is None:
        total += m.tok_emb.weight.numel() * m.tok_emb.weight.element_size()
    return total


def main() -> None:
    ap = decode_args(__doc__.splitlines()[0], runs=5)
    ap.add_argument("--preset", default="gpt2-124m")
    ap.add_argument("--engine", action="store_true", help="also time quantized variants and batch 8")
    ap.add_argument("--quality", action="store_true", help="perplexity per quantization scheme (trains a model)")
    ap.add_argument("--train-seconds", type=float, default=120)
    args = ap.parse_args()
    if args.quality:
        torch.set_num_threads(args.threads)
        return quality(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = Transformer(model_config_from_preset(args.preset)).eval()
    theirs = to_hf_model(ours)  # same weights, HF module layout
    import copy

    mkl = optimize_for_decode(copy.deepcopy(ours), native=False)  # torch matmuls, column-major widening weights
    optimize_for_decode(ours)  # same values; native GEMV kernels when they build (see its docstring)
    prompt = torch.randint(0, ours.cfg.vocab_size, (1, args.prompt)).tolist()[0]
    gen_cfg = GenerationConfig(max_new_tokens=args.new, temperature=0, stop_token_ids=[])

    def run_ours():
        return generate(ours, None, prompt, gen_cfg)

    def run_mkl():
        return generate(mkl, None, prompt, gen_cfg)

    def run_theirs():
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = theirs.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new,
                                  min_new_tokens=args.new, do_sample=False, use_cache=True, pad_token_id=0,
                                  eos_token_id=None)
        return out[0, len(prompt):].tolist()

    for fn in (run_ours, run_mkl, run_theirs):  # warm-up
        fn()
    # interleave the timed runs so background load on a shared machine hits all alike
    t_ours, t_mkl, t_theirs, tok_ours, tok_theirs = [], [], [], None, None
    for _ in range(args.runs):
        t, tok_ours = timed(run_ours, 1)
        t_ours.append(t)
        t_mkl.append(timed(run_mkl, 1)[0])
        t, tok_theirs = timed(run_theirs, 1)
        t_theirs.append(t)
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)

    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bw = copy_bandwidth()
    bound = bw / weight_bytes
    same = tok_ours == tok_theirs
    print(f"{ours.describe()}")
    print(f"threads={args.threads}, prompt={args.prompt}, new={args.new}, greedy, fp32, runs={args.runs} (median)")
    for name, m, best in (("zerollm", m_ours, min(t_ours)), ("zerollm torch", statistics.median(t_mkl), min(t_mkl)),
                          ("transformers", m_theirs, min(t_theirs))):
        print(f"{name:13s}: {args.new / m:7.1f} tok/s median ({m * 1e3 / args.new:.1f} ms/token incl. prefill), "
              f"best run {args.new / best:.1f} tok/s")
    print(f"speedup      : {m_theirs / m_ours:.2f}x median, {min(t_theirs) / min(t_ours):.2f}x best runs")
    print(f"bandwidth    : {bw / 1e9:.1f} GB/s copy; weights {weight_bytes / 1e6:.0f} MB -> bound {bound:.1f} tok/s "
          f"(zerollm at {args.new / m_ours / bound:.0%} of it)")
    print(f"same tokens  : {same}")
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(tok_ours, tok_theirs)) if a != b)
        print(f"  first difference at new token {first}: {tok_ours[first]} vs {tok_theirs[first]}")
    if args.engine:
        engine_variants(ours, prompt, gen_cfg, args, bw, tok_ours)


def engine_variants(ours, prompt, gen_cfg, args, bw, ref_tokens) -> None:
    """int8 / int4 / NF4 batch 1 (three kernels) and Engine batch-8 aggregate throughput (fp32)."""
    import copy

    from zerollm.engine.engine import Engine
    from zerollm.model.quant import quantize_model

    base = optimize_for_decode(copy.deepcopy(ours), False)
    rows = []
    # "native": zerollm.kernels GEMV on the codes (the default); "cached": a dequantized fp32 copy through
    # F.linear (the fallback without a compiler); "aten": torch's int8 weight-only kernel
    # "py blocks": the same native GEMVs, but the layers run as Python modules (no DecodePlan): what the native
    # decode step (engine/decode_plan.py) saves per token
    for scheme, kw, label in ((None, {}, "fp32 py blocks"),
                              ("int8", dict(kernel="native"), "int8 native"),
                              ("int4-sym", dict(kernel="native"), "int4 native"),
                              ("int4-sym", dict(kernel="native"), "int4 py blocks"),
                              ("int4-asym", dict(kernel="native"), "int4a native"),
                              ("nf4", dict(kernel="native"), "nf4 native"),
                              ("int8", dict(kernel="dequant", cache="dequant"), "int8 cached"),
                              ("int8", dict(kernel="aten"), "int8 aten")):
        m = copy.deepcopy(base) if scheme is None else quantize_model(copy.deepcopy(base), scheme, **kw).eval()
        optimize_for_decode(m)  # the native decode step where it can
        if "py blocks" in label:
            m._decode_plan = None
        n_new = min(args.new, 32) if "aten" in label else args.new  # slow kernel: fewer tokens
        cfg = GenerationConfig(max_new_tokens=n_new, temperature=0, stop_token_ids=[])
        generate(m, None, prompt, GenerationConfig(max_new_tokens=2, temperature=0, stop_token_ids=[]))  # warm-up
        times, toks = [], None
        for _ in range(max(1, args.runs // 2)):
            t0 = time.perf_counter()
            toks = generate(m, None, prompt, cfg)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        bound = bw / streamed_bytes(m, "cached" in label)
        match = next((i for i, (a, b) in enumerate(zip(toks, ref_tokens)) if a != b), len(toks))
        rows.append((label, n_new / med, n_new / min(times), bound, match, n_new))
    eng = Engine(ours, max_batch_size=8, max_len=args.prompt + args.new + 1)
    prompts = [torch.randint(0, ours.cfg.vocab_size, (args.prompt,)).tolist() for _ in range(8)]
    eng.generate(prompts[:2], GenerationConfig(max_new_tokens=2, temperature=0, stop_token_ids=[]))
    times = []
    for _ in range(max(1, args.runs // 2)):
        t0 = time.perf_counter()
        outs = eng.generate(prompts, gen_cfg)
        times.append(time.perf_counter() - t0)
    n_tok = sum(len(o[0].token_ids) for o in outs)
    t1 = []
    for _ in range(max(1, args.runs // 2)):
        t0 = time.perf_counter()
        eng.generate(prompts[:1], gen_cfg)
        t1.append(time.perf_counter() - t0)
    print(f"\n{'variant':<14}{'tok/s med':>10}{'best':>8}{'bound':>8}{'% bound':>9}  greedy == fp32 for")
    for label, med, best, bound, match, n in rows:
        print(f"{label:<14}{med:>10.1f}{best:>8.1f}{bound:>8.1f}{med / bound:>9.0%}  {match}/{n} tokens")
    b1 = args.new / statistics.median(t1)
    b8 = n_tok / statistics.median(times)
    print(f"Engine fp32 batch 1: {b1:.1f} tok/s; batch 8 aggregate: {b8:.1f} tok/s ({b8 / b1:.1f}x batch 1)")


def quality(args) -> None:
    """Train a small byte-level model briefly, then held-out perplexity per quantization scheme."""
    import copy
    import math

    from zerollm.config import ModelConfig
    from zerollm.data.corpus import default_corpus_text
    from zerollm.model.quant import SCHEMES, quantize_model

    text = default_corpus_text().encode("utf-8")
    data = torch.tensor(list(text[:4_000_000]), dtype=torch.long)
    split = int(len(data) * 0.95)
    train, val = data[:split], data[split:]
    T, B = 64, 16
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=256, n_layer=4, n_head=4, n_kv_head=4, d_model=128, max_seq_len=T)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.train_seconds:
        ix = torch.randint(0, len(train) - T - 1, (B,))
        x = torch.stack([train[i:i + T] for i in ix])
        y = torch.stack([train[i + 1:i + T + 1] for i in ix])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    model.eval()
    print(f"{model.describe()}\ntrained {step} steps ({args.train_seconds:.0f}s), last train loss {loss.item():.3f}")
    gen = torch.Generator().manual_seed(1)
    starts = torch.randint(0, len(val) - T - 1, (64,), generator=gen)
    xs = torch.stack([val[i:i + T] for i in starts])
    ys = torch.stack([val[i + 1:i + T + 1] for i in starts])

    def ppl(m, per_window=False):
        """per_window=True runs one 64-token window at a time: 64 rows, so QuantLinear takes the native
        decode kernel (int8 activations); a whole batch of windows takes the dequantized-weight path."""
        with torch.no_grad():
            logits = torch.cat([m(x[None]) for x in xs]) if per_window else m(xs)
            return math.exp(torch.nn.functional.cross_entropy(logits.flatten(0, 1), ys.flatten()).item())

    base = ppl(model)
    prompt = list(val[:16].tolist())
    g = GenerationConfig(max_new_tokens=64, temperature=0, stop_token_ids=[])
    ref = generate(model, None, prompt, g)
    print("val ppl: weights only (prompt path, dequantized weights) | native decode kernel (int8 activations)")
    print(f"{'scheme':<10}{'val ppl':>9}{'rel change':>12}{'kernel ppl':>12}{'rel change':>12}  greedy == fp32 for")
    print(f"{'fp32':<10}{base:>9.4f}{'':>12}{base:>12.4f}")
    for scheme in SCHEMES:
        qm = quantize_model(copy.deepcopy(model), scheme, 32)
        p, pk = ppl(qm), ppl(qm, per_window=True)
        out = generate(qm, None, prompt, g)
        match = next((i for i, (a, b) in enumerate(zip(out, ref)) if a != b), len(out))
        print(f"{scheme:<10}{p:>9.4f}{(p / base - 1):>+12.2%}{pk:>12.4f}{(pk / base - 1):>+12.2%}  "
              f"{match}/{len(ref)} tokens")
    stories260k(args)


def stories260k(args) -> None:
    """Greedy agreement with fp32 per scheme on Karpathy's trained stories260K (llama2.c), if present."""
    import copy
    from pathlib import Path

    from zerollm.model.quant import SCHEMES, quantize_model

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "llama2c_stories260K" / "stories260K.bin"
    if not path.is_file():
        return
    from zerollm.interop.llama2c import load_llama2c

    loaded = load_llama2c(path)
    model = (loaded[0] if isinstance(loaded, tuple) else loaded).eval()
    g = GenerationConfig(max_new_tokens=200, temperature=0, stop_token_ids=[])
    ref = generate(model, None, [1], g)
    print(f"\nstories260K ({model.num_params() / 1e3:.0f}K params, trained): greedy == fp32 for (of {len(ref)}), "
          "output projection int8 (default) | float (output_scheme=None)")
    for scheme in SCHEMES:
        matches = []
        for head in ("int8", None):
            try:
                qm = quantize_model(copy.deepcopy(model), scheme, 32, output_scheme=head)
            except ValueError as e:
                matches.append(f"skipped ({e})")
                continue
            out = generate(qm, None, [1], g)
            matches.append(str(next((i for i, (a, b) in enumerate(zip(out, ref)) if a != b), len(out))))
        print(f"  {scheme:<10}{matches[0]:>6} | {matches[1]:>6} tokens")

if __name__ == "__main__":
    main()
