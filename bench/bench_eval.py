"""Log-likelihood throughput: `zerollm eval` vs lm-evaluation-harness's `hf` backend, and peak RSS of a PIQA run.

One random GPT-2-124M-shaped transformers model (from its config, no hub) with GPT-2's real tokenizer
(../shared/data/gpt2_bpe) is saved as a Hugging Face directory. The same PIQA requests (the first N items,
lm-eval's prompt "Question: {goal}\\nAnswer:" + " " + solution: 2 requests per item) are scored, in the
same process and run, alternating, by
    hf        lm_eval.models.huggingface.HFLM(pretrained=DIR, batch_size=B, dtype=float32).loglikelihood
    zerollm   zerollm.eval.harness.ZeroLLM(pretrained=DIR, batch_size=B).loglikelihood (= `zerollm eval`'s
              Scorer: the HF directory loaded into zerollm's Transformer)
and we report requests/s (median over --runs) and the largest |Δ log-likelihood|. `--rss` also runs
`zerollm eval --tasks piqa --limit N` in a child process and reports its peak RSS next to the weight bytes
and the RSS of a process that only imported torch + zerollm.

    nice -n 10 python bench/bench_eval.py [--items 40] [--batch-size 16] [--runs 3] [--threads 2] [--rss]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ZEROLLM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def make_model(d: Path) -> int:
    import tokenizers as tk
    import transformers

    src = DATA / "gpt2_bpe"
    tok = tk.Tokenizer(tk.models.BPE.from_file(str(src / "encoder.json"), str(src / "vocab.bpe")))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.add_special_tokens([tk.AddedToken("<|endoftext|>", special=True)])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config())  # 124M: 12 layers, 768 wide, 1024 positions
    model.save_pretrained(d)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def piqa_requests(n: int):
    from lm_eval.api.instance import Instance

    rows = [json.loads(x) for x in (DATA / "piqa" / "valid.jsonl").read_text().splitlines()[:n]]
    reqs = []
    for i, r in enumerate(rows):
        for j, sol in enumerate((r["sol1"], r["sol2"])):
            reqs.append(Instance(request_type="loglikelihood", doc=r, arguments=(f"Question: {r['goal']}\nAnswer:",
                                                                                 " " + sol), idx=j))
    return reqs


HWM = ("import re; print('HWM', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")


def peak_rss_of_piqa_run(model_dir: Path, items: int, threads: int) -> tuple[float, float]:
    """(peak RSS MB of `zerollm eval --tasks piqa`, peak RSS MB of a process that only imports torch/zerollm).
    VmHWM of the child's own address space (ru_maxrss would carry over this big parent's peak through exec)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as out:
        code = f"import sys; from zerollm.cli import main; main(sys.argv[1:]); {HWM}"
        res = subprocess.run([sys.executable, "-c", code, "--threads", str(threads), "eval", "--model", str(model_dir),
                              "--tasks", "piqa", "--limit", str(items), "--data-dir", str(DATA),
                              "--out", str(Path(out) / "ev")], env=env, capture_output=True, text=True, check=True)
        run_kb = int(res.stdout.split("HWM")[-1])
    base = subprocess.run([sys.executable, "-c", f"import torch, zerollm.eval, zerollm.loading; {HWM}"],
                          env=env, capture_output=True, text=True, check=True)
    return run_kb / 1024, int(base.stdout.split("HWM")[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=40, help="PIQA items (2 requests each)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rss", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval.models.huggingface import HFLM

    from zerollm.eval.harness import ZeroLLM

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        weight_bytes = make_model(d)
        reqs = piqa_requests(args.items)
        backends = {"hf": HFLM(pretrained=str(d), batch_size=args.batch_size, dtype="float32", device="cpu"),
                    "zerollm": ZeroLLM(pretrained=str(d), batch_size=args.batch_size)}
        times = {k: [] for k in backends}
        cpu = {k: [] for k in backends}  # CPU seconds of this process: steadier than wall time on a shared machine
        scores = {}
        for _ in range(args.runs):
            for name, lm in backends.items():
                t0, c0 = time.perf_counter(), time.process_time()
                scores[name] = lm.loglikelihood(reqs, disable_tqdm=True)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        diff = max(abs(a[0] - b[0]) for a, b in zip(scores["hf"], scores["zerollm"]))
        print(f"machine: {os.cpu_count()} CPUs (shared), torch {torch.__version__}, {args.threads} threads; "
              f"GPT-2-124M fp32, PIQA first {args.items} items = {len(reqs)} requests, batch {args.batch_size}, "
              f"median of {args.runs}")
        rate = {k: len(reqs) / statistics.median(v) for k, v in times.items()}
        cpu_rate = {k: len(reqs) / statistics.median(v) for k, v in cpu.items()}
        for k in backends:
            print(f"  {k:8s} {rate[k]:7.2f} requests/s wall (runs: {', '.join(f'{t:.1f}s' for t in times[k])}); "
                  f"{cpu_rate[k]:7.2f} requests per CPU-second (runs: {', '.join(f'{t:.1f}s' for t in cpu[k])})")
        print(f"  speedup zerollm / hf: {rate['zerollm'] / rate['hf']:.2f}x wall (median), "
              f"{min(times['hf']) / min(times['zerollm']):.2f}x wall (best run), "
              f"{cpu_rate['zerollm'] / cpu_rate['hf']:.2f}x CPU time; max |Δ loglik| = {diff:.2e}")
        if args.rss:
            del backends
            run_mb, base_mb = peak_rss_of_piqa_run(d, args.items, args.threads)
            print(f"  peak RSS, zerollm eval --tasks piqa --limit {args.items}: {run_mb:.0f} MB; imports alone: "
                  f"{base_mb:.0f} MB; weights: {weight_bytes / 2**20:.0f} MB → (peak − imports) / weights = "
                  f"{(run_mb - base_mb) / (weight_bytes / 2**20):.2f}")


if __name__ == "__main__":
    main()
