"""zerollm decode vs llama.cpp on the same GPT-2-124M weights: fp32, int8 vs q8_0, int4 vs q4_0, batch 1.

The weights are the bench_decode.py model (GPT-2-124M shape, seed 0, random), exported with our GGUF writer
(zerollm.interop.gguf) with the real GPT-2 tokenizer (../shared/data/gpt2_bpe); llama.cpp's own quantizer
makes q8_0 and q4_0 from the f32 file. Both sides decode 128 tokens greedily after the same 32-token prompt
with the same thread count; medians of interleaved runs; the bandwidth bound (copy bandwidth / bytes each token
streams) is measured in the same run.

    pip install llama-cpp-python   # compiles llama.cpp from its sdist (~10 min on 2 cores); never in CI
    python bench/bench_llamacpp.py [--threads 2] [--runs 3] [--new 128] [--prompt 32] [--out runs/bench_llamacpp]

Without llama-cpp-python the zerollm rows are still printed.
"""
from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import copy_bandwidth, decode_args, streamed_bytes  # noqa: E402

from zerollm.config import model_config_from_preset  # noqa: E402
from zerollm.engine.generate import GenerationConfig, generate  # noqa: E402
from zerollm.model import Transformer  # noqa: E402
from zerollm.model.quant import quantize_model  # noqa: E402
from zerollm.engine.native import optimize_for_decode  # noqa: E402

GPT2_BPE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2_bpe"


def main() -> None:
    ap = decode_args(__doc__.splitlines()[0], runs=3)
    ap.add_argument("--out", default="runs/bench_llamacpp")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Transformer(model_config_from_preset("gpt2-124m")).eval()
    prompt = torch.randint(0, model.cfg.vocab_size, (1, args.prompt)).tolist()[0]
    gen_cfg = GenerationConfig(max_new_tokens=args.new, temperature=0, stop_token_ids=[])

    ours = {"fp32": optimize_for_decode(copy.deepcopy(model))}
    for scheme, label in (("int8", "int8"), ("int4-sym", "int4 (g32 sym)")):
        ours[label] = optimize_for_decode(quantize_model(copy.deepcopy(model), scheme, 32, kernel="native").eval())

    theirs = {}
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
        print("llama-cpp-python is not installed: zerollm rows only (pip install llama-cpp-python)")
    if llama_cpp is not None:
        theirs = llamacpp_models(model, Path(args.out), args.threads, llama_cpp)

    def run_llama(llm):
        llm.reset()
        out = []
        for tok in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            out.append(tok)
            if len(out) == args.new:
                break
        return out

    runners = {f"zerollm {k}": (lambda m=m: generate(m, None, prompt, gen_cfg)) for k, m in ours.items()}
    runners.update({f"llama.cpp {k}": (lambda llm=llm: run_llama(llm)) for k, (llm, _) in theirs.items()})
    nbytes = {f"zerollm {k}": streamed_bytes(m) for k, m in ours.items()}
    nbytes.update({f"llama.cpp {k}": b for k, (_, b) in theirs.items()})
    times = {k: [] for k in runners}
    tokens = {}
    for fn in runners.values():  # warm-up
        fn()
    for _ in range(args.runs):  # interleaved: every variant once per round, so background load hits all alike
        for k, fn in runners.items():
            t0 = time.perf_counter()
            tokens[k] = fn()
            times[k].append(time.perf_counter() - t0)
    bw = copy_bandwidth()

    ref = tokens["zerollm fp32"]
    print(f"{model.describe()}\nthreads={args.threads}, prompt={args.prompt}, new={args.new}, greedy, "
          f"median of {args.runs} interleaved runs; copy bandwidth {bw / 1e9:.1f} GB/s")
    print(f"{'variant':<26}{'tok/s':>8}{'best':>8}{'MB/token':>10}{'bound':>8}{'% bound':>9}  same tokens as zerollm fp32")
    med = {k: statistics.median(t) for k, t in times.items()}
    for k in runners:
        bound = bw / nbytes[k]
        same = next((i for i, (a, b) in enumerate(zip(tokens[k], ref)) if a != b), len(tokens[k]))
        print(f"{k:<26}{args.new / med[k]:>8.1f}{args.new / min(times[k]):>8.1f}{nbytes[k] / 1e6:>10.0f}"
              f"{bound:>8.1f}{args.new / med[k] / bound:>9.0%}  {same}/{len(tokens[k])}")
    if theirs:
        for a, b in (("fp32", "f32"), ("int8", "q8_0"), ("int4 (g32 sym)", "q4_0")):
            print(f"zerollm {a} / llama.cpp {b}: {med[f'llama.cpp {b}'] / med[f'zerollm {a}']:.2f}x")


def llamacpp_models(model, out: Path, threads: int, llama_cpp) -> dict:
    """f32 GGUF from our exporter, q8_0 / q4_0 from llama.cpp's quantizer; each loaded with `threads`."""
    from zerollm.interop.gguf import export_gguf
    from zerollm.tokenizer.gpt2 import load_gpt2_bpe

    out.mkdir(parents=True, exist_ok=True)
    f32 = out / "gpt2-124m-random-f32.gguf"
    if not f32.is_file():
        tok = load_gpt2_bpe(GPT2_BPE / "encoder.json", GPT2_BPE / "vocab.bpe")
        export_gguf(model, tok, f32)
    files = {"f32": f32}
    for name, ftype in (("q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0), ("q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0)):
        path = out / f"gpt2-124m-random-{name}.gguf"
        if not path.is_file():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.nthread = threads
            rc = llama_cpp.llama_model_quantize(str(f32).encode(), str(path).encode(), params)
            if rc != 0:
                raise RuntimeError(f"llama_model_quantize {name} failed ({rc})")
        files[name] = path
    return {name: (llama_cpp.Llama(str(p), n_ctx=256, n_threads=threads, n_threads_batch=threads, n_batch=64,
                                   verbose=False), gguf_streamed_bytes(p)) for name, p in files.items()}


def gguf_streamed_bytes(path: Path) -> int:
    """Bytes of the tensors a decoded token reads: all but the embedding tables (one row each per token)."""
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(str(path)).tensors
               if t.name not in ("token_embd.weight", "position_embd.weight"))


if __name__ == "__main__":
    main()
