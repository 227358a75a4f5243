"""Speculative decoding speed-up, measured on two models trained here (issue 5, item 3).

A random target and draft never agree, so we train both, with the one training loop (`zerollm.stages.pretrain`), on
the embedded Python-docs corpus and one byte-level BPE tokenizer:

    target  Llama-style, 6 layers x d_model 512 (20M params, 81 MB fp32): larger than the L3 cache, so a
            decode step streams every weight from memory and k+1 tokens cost about as much as 1
    draft   2 layers x d_model 256 (2M params), a few times cheaper per token

Everything is cached under `--out` (default runs/bench_speculative): corpus, tokenizer, shards and the two
trained models; a re-run skips straight to timing (`--retrain` forces training again).

Timing: greedy, `--new` tokens from held-out prompts, target alone (`generate`, the normal decode path) vs
`speculative_generate` for each k in `--ks`, interleaved in every round; medians over `--runs` rounds. Both
models go through `optimize_for_decode()` (native GEMV kernels when they build). With `--threads 1` (the
default: the machine is shared) we also report process CPU time, which other processes' load does not
inflate. Also reported: acceptance rate (accepted / proposed draft tokens), tokens per target forward, and
whether the greedy outputs are identical. The cost of one forward (draft with 1 token, target with 1..k+1 tokens) is
measured too, and two columns explain the speed-up from it: "model" = tokens per round x target 1-token cost /
(k draft forwards + one (k+1)-token target forward), and "ideal" = the same if verifying k+1 tokens cost no more
than 1 token (what a weight-streaming multi-row matmul would give in this bandwidth-bound regime). A sampled run (temperature 0.8) reports acceptance and speed too
(its output differs from the target's own sample: the random streams differ, the distribution does not).

    python bench/bench_speculative.py [--threads 1] [--runs 3] [--new 128] [--ks 2,3,4,5,6]
        [--target-minutes 12] [--draft-minutes 3] [--out runs/bench_speculative] [--retrain]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from zerollm.engine.native import optimize_for_decode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine  # noqa: E402

TARGET = dict(n_layer=6, d_model=512, n_head=8, n_kv_head=8)
DRAFT = dict(n_layer=2, d_model=256, n_head=4, n_kv_head=4)


def prepare(out: Path) -> Path:
    """Corpus, tokenizer and shards under out/ (once)."""
    from zerollm.api import data_prepare, tokenizer_train
    from zerollm.data.corpus import write_default_corpus

    shards = out / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    out.mkdir(parents=True, exist_ok=True)
    corpus = write_default_corpus(out / "corpus.jsonl")
    tokenizer_train([str(corpus)], out / "tokenizer", vocab_size=2048, show_progress=False)
    data_prepare([str(corpus)], out / "tokenizer", shards, val_fraction=0.05, show_progress=False)
    return shards


def train_model(name: str, shards: Path, out: Path, arch: dict, minutes: float, lr: float, retrain: bool) -> Path:
    """Pretrain one model for `minutes` (skipped when out/name already holds a final checkpoint)."""
    from zerollm.loading import latest_checkpoint
    from zerollm.stages.pretrain import PretrainConfig, pretrain
    from zerollm.train.loop import TrainConfig

    run = out / name
    if not retrain and latest_checkpoint(run) is not None:
        print(f"{name}: cached in {run}")
        return run
    # small batches: on a shared CPU a few minutes buy ~10^5 tokens, and more (noisier) steps learn more from
    # them than a few large ones
    tc = TrainConfig(steps=100_000, batch_size=4, seq_len=128, lr=lr, warmup_steps=10, schedule="wsd",
                     decay_fraction=0.3, min_lr_ratio=0.0, weight_decay=0.1, beta2=0.99, eval_every=10_000,
                     eval_batches=16, eval_at_start=False, ckpt_every=0, keep_last=1, log_every=20, seed=1337,
                     device="cpu", max_minutes=minutes)
    pc = PretrainConfig(data=str(shards), out=str(run), preset="llama-20m", model=dict(arch, max_seq_len=512),
                        train=tc, sample_prompts=[], sample_tokens=0)
    t0 = time.perf_counter()
    summary = pretrain(pc, quiet=True)
    ev = (summary.get("evals") or [{}])[-1]
    print(f"{name}: trained {time.perf_counter() - t0:.0f} s, val {ev.get('val_loss', float('nan')):.3f} nats/token "
          f"({ev.get('val_bpb', float('nan')):.3f} bits/byte)")
    return run


def held_out_prompts(out: Path, tokenizer, n: int, length: int) -> list[list[int]]:
    """The first `length` tokens of n documents from the end of the corpus (the validation side)."""
    docs = [json.loads(line)["text"] for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    prompts = []
    for text in reversed(docs):
        ids = tokenizer.encode(text)
        if len(ids) >= length:
            prompts.append(ids[:length])
        if len(prompts) == n:
            break
    return prompts


def forward_costs(target, draft, prompt: list[int], k_max: int, reps: int = 15) -> dict:
    """Median CPU seconds of one cached forward: draft with 1 token, target with T = 1..k_max+1 tokens (the
    verification of k drafts), both after a prefill of `prompt` (cache rolled back after each call)."""
    from zerollm.model.kv_cache import KVCache

    def one(model, T):
        cache = KVCache.for_model(model, 1, max_len=len(prompt) + T)
        times = []
        with torch.inference_mode():
            model(torch.tensor([prompt]), cache=cache, return_hidden=True)
            x = torch.tensor([prompt[:T]])
            for _ in range(reps):
                cache.crop(len(prompt))
                t0 = time.process_time()
                model.logits(model(x, cache=cache, return_hidden=True)[0])
                times.append(time.process_time() - t0)
        return statistics.median(times)

    return dict(draft=one(draft, 1), target={T: one(target, T) for T in range(1, k_max + 2)})


def predicted_speedup(tokens_per_round: float, k: int, cost: dict, verify_tokens: int | None = None) -> float:
    """Speed-up explained by the measured costs (Leviathan et al. 2023, sec. 3.4): a round emits
    `tokens_per_round` tokens (measured) and costs k draft forwards plus one target forward of k+1 tokens;
    the target alone pays one 1-token forward per token. `verify_tokens=1` prices the verification like a
    1-token forward: the speed-up if k+1 rows cost no more than one (a weight-streaming multi-row kernel)."""
    round_cost = k * cost["draft"] + cost["target"][verify_tokens or k + 1]
    return tokens_per_round * cost["target"][1] / round_cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_speculative"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--ks", default="2,3,4,5,6")
    ap.add_argument("--target-minutes", type=float, default=12.0)
    ap.add_argument("--draft-minutes", type=float, default=3.0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="train (or find) the two models, then stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")

    shards = prepare(out)
    target_dir = train_model("target", shards, out, TARGET, args.target_minutes, 2e-3, args.retrain)
    draft_dir = train_model("draft", shards, out, DRAFT, args.draft_minutes, 3e-3, args.retrain)
    if args.train_only:
        return

    from zerollm.engine.generate import GenerationConfig, generate
    from zerollm.engine.speculative import speculative_generate
    from zerollm.loading import load

    loaded = load(target_dir)

    target, tok = loaded.model, loaded.tokenizer
    draft = load(draft_dir, with_tokenizer=False).model
    optimize_for_decode(target)
    optimize_for_decode(draft)
    print(f"target: {target.describe()}\ndraft:  {draft.describe()}")
    prompts = held_out_prompts(out, tok, args.prompts, args.prompt)
    ks = [int(k) for k in args.ks.split(",")]
    clock_cpu = time.process_time

    def timed(fn):
        w0, c0 = time.perf_counter(), clock_cpu()
        res = fn()
        return res, time.perf_counter() - w0, clock_cpu() - c0

    cost = forward_costs(target, draft, prompts[0], max(ks))
    print(f"\ncost per forward (CPU ms, median): draft 1 token {cost['draft'] * 1e3:.2f}; target "
          + ", ".join(f"{t} tok {c * 1e3:.2f}" for t, c in sorted(cost['target'].items())))
    for mode, gen_cfg in (("greedy", GenerationConfig(max_new_tokens=args.new, temperature=0, stop_token_ids=[])),
                          ("sampled T=0.8", GenerationConfig(max_new_tokens=args.new, temperature=0.8, seed=0,
                                                             stop_token_ids=[]))):
        methods = [("target alone", None)] + [(f"speculative k={k}", k) for k in ks]
        wall = {m: [] for m, _ in methods}
        cpu = {m: [] for m, _ in methods}
        ntok = {m: 0 for m, _ in methods}
        stats = {m: dict(proposed=0, accepted=0, target_forwards=0) for m, _ in methods}
        same = {m: True for m, _ in methods}
        generate(target, None, prompts[0], GenerationConfig(max_new_tokens=4, temperature=0, stop_token_ids=[]))
        speculative_generate(target, draft, prompts[0], GenerationConfig(max_new_tokens=8, temperature=0,
                                                                         stop_token_ids=[]), num_draft=3)
        for r in range(args.runs):
            for p in prompts:  # interleaved: background load hits every method alike
                ref = None
                for m, k in methods:
                    if k is None:
                        toks, w, c = timed(lambda: generate(target, None, p, gen_cfg))
                        ref = toks
                    else:
                        st = {}
                        toks, w, c = timed(lambda: speculative_generate(target, draft, p, gen_cfg, num_draft=k,
                                                                        stats=st))
                        if r == 0:
                            for key in stats[m]:
                                stats[m][key] += st[key]
                        same[m] &= toks == ref
                    wall[m].append(w)
                    cpu[m].append(c)
                    if r == 0:
                        ntok[m] += len(toks)
        n_per = {m: ntok[m] / len(prompts) for m in ntok}
        base_w = n_per["target alone"] / statistics.median(wall["target alone"])
        base_c = n_per["target alone"] / statistics.median(cpu["target alone"])
        print(f"\n{mode}: {len(prompts)} held-out prompts x {args.prompt} tokens, {args.new} new, runs={args.runs} "
              f"(medians), threads={args.threads}, load average {os.getloadavg()[0]:.2f}")
        print(f"{'method':<20}{'tok/s wall':>11}{'x':>6}{'tok/s cpu':>11}{'x':>6}{'accept':>8}{'tok/fwd':>8}{'model':>6}{'ideal':>7}"
              + ("  identical" if mode == "greedy" else ""))
        for m, k in methods:
            tw = n_per[m] / statistics.median(wall[m])
            tc = n_per[m] / statistics.median(cpu[m])
            st = stats[m]
            acc = f"{st['accepted'] / st['proposed']:.0%}" if st["proposed"] else "-"
            per_fwd = f"{ntok[m] / st['target_forwards']:.2f}" if st["target_forwards"] else "1.00"
            pred = ""
            if k is not None and st["target_forwards"]:
                per_round = ntok[m] / st["target_forwards"]
                pred = (f"{predicted_speedup(per_round, k, cost):>6.2f}"
                        f"{predicted_speedup(per_round, k, cost, verify_tokens=1):>7.2f}")
            print(f"{m:<20}{tw:>11.1f}{tw / base_w:>6.2f}{tc:>11.1f}{tc / base_c:>6.2f}{acc:>8}{per_fwd:>8}"
                  + f"{pred:>13}" + (f"  {same[m]}" if mode == "greedy" else ""))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
