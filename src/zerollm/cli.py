"""`zerollm <stage> ...`: argument parsing and dispatch only; the work is in `zerollm.api`.

Stages that take a config (`pretrain`) accept `--config FILE.yaml` and dotted overrides such as
`train.lr=3e-4` or `--train.lr=3e-4` after the named options.
"""
from __future__ import annotations

import argparse
import sys


def _add_tokenizer(sub) -> None:
    p = sub.add_parser("tokenizer", help="train or inspect tokenizers")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("train", help="train a tokenizer (byte-level BPE, WordPiece, Unigram, SentencePiece-BPE)")
    t.add_argument("inputs", nargs="*", help="text/.jsonl/.parquet files, directories or globs")
    t.add_argument("--input", action="append", default=[], help="another input (repeatable)")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--algorithm", default="bpe", choices=["bpe", "wordpiece", "unigram", "bpe_sp"],
                   help="bpe: byte-level BPE (GPT-2/4); wordpiece: BERT; unigram / bpe_sp: SentencePiece-style")
    t.add_argument("--pattern", default=None, help="pre-tokenization regex, or 'gpt2' / 'gpt4' (bpe only)")
    t.add_argument("--text-field", default="text")
    t.add_argument("--out", required=True)
    st = tsub.add_parser("stats", help="tokens per char/byte, vocab usage, top tokens, segmentation")
    st.add_argument("tokenizer", help="tokenizer directory")
    st.add_argument("files", nargs="+", help="held-out text files")
    cmp_ = tsub.add_parser("compare", help="compare tokenizers side by side on the same text")
    cmp_.add_argument("files", nargs="+", help="held-out text files")
    cmp_.add_argument("--tokenizer", action="append", required=True, help="tokenizer directory (repeat)")
    cmp_.add_argument("--html", default=None, help="also write an HTML page with the segmentations")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="prepare token shards")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("prepare", help="tokenize documents into shards + manifest + validation split")
    d.add_argument("inputs", nargs="+", help="text/.jsonl/.parquet files, directories or globs")
    d.add_argument("--tokenizer", required=True, help="tokenizer directory")
    d.add_argument("--out", required=True)
    d.add_argument("--text-field", default="text")
    d.add_argument("--val-fraction", type=float, default=0.01)
    d.add_argument("--workers", type=int, default=2)


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="sample text from a model")
    g.add_argument("--model", required=True, help="checkpoint, run or Hugging Face model directory")
    g.add_argument("--prompt", default="", help="prompt text ('-' reads stdin)")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--device", default="auto")
    g.add_argument("--no-stream", action="store_true")
    g.add_argument("--min-p", type=float, default=0.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--no-repeat-ngram-size", type=int, default=0)
    g.add_argument("--logit-bias", action="append", default=[], metavar="ID=BIAS", help="repeatable")
    g.add_argument("--num-beams", type=int, default=1, help="> 1: beam search (deterministic)")
    g.add_argument("--length-penalty", type=float, default=1.0)
    g.add_argument("--early-stopping", default="false", choices=["true", "false", "never"])
    g.add_argument("--num-return-sequences", type=int, default=1)
    g.add_argument("--logprobs", type=int, default=None, help="print each token's logprob and the top N")
    g.add_argument("--json-schema", default=None, help="JSON Schema file: output is valid JSON for it")
    g.add_argument("--regex", default=None, help="output must match this regex")
    g.add_argument("--draft", default=None, help="smaller model (same tokenizer) for speculative decoding")
    g.add_argument("--draft-tokens", type=int, default=4, help="tokens the draft proposes per target forward")


def _add_engine(sub) -> None:
    q = sub.add_parser("quantize", help="write a weight-only int8/int4/NF4 checkpoint")
    q.add_argument("--model", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--bits", type=int, choices=[8, 4], default=None)
    q.add_argument("--scheme", choices=["int8", "int4-sym", "int4-asym", "nf4"], default=None)
    q.add_argument("--group-size", type=int, default=32)
    q.add_argument("--output-scheme", choices=["int8", "int4-sym", "int4-asym", "nf4", "none"], default="int8",
                   help="scheme of the output projection (default int8; none keeps it float)")
    mem = sub.add_parser("memory", help="weight + KV-cache memory for fp32/bf16/int8/int4")
    mem.add_argument("--params", default=None, help="e.g. 7B, 124M")
    mem.add_argument("--model", default=None)
    mem.add_argument("--context", type=int, default=4096)
    mem.add_argument("--batch", type=int, default=1)
    b = sub.add_parser("bench", help="benchmarks (decode: ours beside transformers generate)")
    b.add_argument("what", choices=["decode"])


def _add_interop(sub) -> None:
    c = sub.add_parser("convert", help="convert a Hugging Face dir or llama2.c .bin into a zerollm checkpoint")
    c.add_argument("--from", dest="from_format", choices=["hf", "llama2c"], default="hf")
    c.add_argument("src", help="HF model directory, or llama2.c .bin file")
    c.add_argument("--out", required=True, help="checkpoint directory to write")
    c.add_argument("--tokenizer", default=None, help="llama2c: tokenizer .model or tokenizer.bin")
    e = sub.add_parser("export", help="export a model as a Hugging Face dir, GGUF or llama2.c .bin")
    e.add_argument("--format", required=True, choices=["hf", "gguf", "llama2c"])
    e.add_argument("--model", required=True, help="checkpoint, run or HF directory")
    e.add_argument("--out", required=True, help="directory (hf) or file (gguf, llama2c) to write")
    e.add_argument("--version", type=int, default=0, help="llama2c file version (0 = run.c's, 1)")
    e.add_argument("--dtype", default=None, help="hf: float32|bfloat16|float16; gguf: f32|f16")
    e.add_argument("--tokenizer-out", default=None, help="llama2c: where to write tokenizer.bin")


POSTTRAIN_STAGES = {"sft": "supervised chat fine-tuning (loss on assistant tokens)",
                    "reward": "reward model: scalar head + Bradley-Terry loss on preference pairs",
                    "dpo": "direct preference optimization against the start model",
                    "ppo": "PPO (RLHF) with a reward model, value head, KL penalty and GAE",
                    "grpo": "GRPO on verifiable rewards (GSM8K-style #### answers)"}


def _add_posttrain(sub) -> None:
    for name, help_ in POSTTRAIN_STAGES.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=None, help="YAML config")
        p.add_argument("--model", default=None, help="start model: checkpoint, run or HF directory")
        p.add_argument("--data", action="append", default=None, help="data file/dir/glob (repeatable)")
        p.add_argument("--out", default=None, help="run directory")
        p.add_argument("--lora", action="store_true", help="train LoRA adapters on a frozen base")
        p.add_argument("--qlora", action="store_true", help="LoRA over a 4-bit NF4 base")
        p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
        if name == "ppo":
            p.add_argument("--reward-model", default=None, help="run dir of `zerollm reward`")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 lora_config.r=16")


def _add_use(sub) -> None:
    """`zerollm chat` and `zerollm rag index|ask` (zerollm.chat, zerollm.rag)."""
    c = sub.add_parser("chat", help="chat with a model in the terminal (streaming; /reset /system /save /load)")
    c.add_argument("--model", required=True, help="checkpoint, run or Hugging Face model directory")
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument("--max-new-tokens", type=int, default=256)
    c.add_argument("--temperature", type=float, default=0.7)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--device", default="auto")
    r = sub.add_parser("rag", help="retrieval-augmented answers from your documents")
    rsub = r.add_subparsers(dest="action", required=True)
    ri = rsub.add_parser("index", help="build or update an index from .txt/.md/.html/.jsonl files or directories")
    ri.add_argument("docs", nargs="*", help="files or directories to add (re-adding a file replaces it)")
    ri.add_argument("--out", required=True, help="index directory (updated in place if it exists)")
    ri.add_argument("--delete", action="append", default=[], help="remove a source from the index (repeatable)")
    ri.add_argument("--embedder", default=None, help="sentence-transformers or zerollm model dir (dense + hybrid)")
    ri.add_argument("--chunk-chars", type=int, default=500)
    ri.add_argument("--overlap", type=int, default=100)
    ra = rsub.add_parser("ask", help="answer a question with numbered citations")
    ra.add_argument("index", help="index directory")
    ra.add_argument("question")
    ra.add_argument("--model", default=None, help="model to answer with; without it, print the passages")
    ra.add_argument("-k", type=int, default=4, help="passages to retrieve")
    ra.add_argument("--mode", default="auto", choices=["auto", "bm25", "dense", "hybrid"])
    ra.add_argument("--max-new-tokens", type=int, default=200)
    ra.add_argument("--device", default="auto")


def _run_use(args: argparse.Namespace) -> int:
    from zerollm import api

    if args.stage == "chat":
        api.chat(args.model, system=args.system, device=args.device, max_new_tokens=args.max_new_tokens,
                 temperature=args.temperature, seed=args.seed)
    elif args.action == "index":
        if not args.docs and not args.delete:
            raise ValueError("give documents to index and/or --delete SOURCE")
        index = api.rag_index(args.docs, args.out, embedder=args.embedder, max_chars=args.chunk_chars,
                              overlap=args.overlap, delete=args.delete)
        print(f"index: {len(index)} chunks from {len(index.sources)} sources → {args.out}")
    else:
        result = api.rag_ask(args.index, args.question, model=args.model, k=args.k, mode=args.mode,
                             max_new_tokens=args.max_new_tokens, device=args.device,
                             stream=(lambda piece: (sys.stdout.write(piece), sys.stdout.flush())))
        print() if args.model else None
        print(result.format() if not args.model else "\n".join(
            f"[{c['n']}] {c['source']}" for c in result.citations))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zerollm", description="build, train and use your own language models")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads for this command (default: torch's, one per core). On a machine "
                             "where other jobs hold cores, 1 avoids stalls: every parallel region waits for its "
                             "slowest thread")
    sub = parser.add_subparsers(dest="stage")
    _add_tokenizer(sub)
    _add_data(sub)
    pt = sub.add_parser("pretrain", help="train a model on token shards (torchrun-ready)")
    pt.add_argument("--config", default=None, help="YAML config (see configs/)")
    pt.add_argument("--data", default=None, help="shards directory")
    pt.add_argument("--out", default=None, help="run directory")
    pt.add_argument("--preset", default=None)
    pt.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    pt.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.n_layer=6")
    _add_posttrain(sub)
    _add_generate(sub)
    _add_engine(sub)
    _add_use(sub)
    qs = sub.add_parser("quickstart", help="tokenizer + data + pretrain + samples in ~5 minutes")
    qs.add_argument("--corpus", nargs="+", default=None, help="your own text files instead of the Python docs")
    qs.add_argument("--minutes", type=float, default=5.0)
    qs.add_argument("--preset", default="quickstart")
    qs.add_argument("--out", default="runs/quickstart")
    qs.add_argument("--device", default="auto")
    _add_interop(sub)
    sv = sub.add_parser("serve", help="OpenAI-compatible API + chat page (http://HOST:PORT/)")
    sv.add_argument("--model", required=True, help="checkpoint or run directory")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    info = sub.add_parser("model", help="inspect a model: parameters and FLOPs per token")
    info.add_argument("action", choices=["info"])
    info.add_argument("--preset", default=None)
    info.add_argument("--model", default=None)
    info.add_argument("--seq-len", type=int, default=None)
    return parser


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    from zerollm import api

    if args.stage in ("chat", "rag"):
        return _run_use(args)
    if args.stage == "tokenizer" and args.action in ("stats", "compare"):
        from zerollm.tokenizer.stats import tokenizer_compare, tokenizer_stats

        if args.action == "stats":
            tokenizer_stats(args.tokenizer, args.files)
        else:
            tokenizer_compare(args.tokenizer, args.files, html_out=args.html)
    elif args.stage == "tokenizer":
        from zerollm.tokenizer.pretokenize import resolve_pattern

        inputs = list(args.inputs) + list(args.input)
        if not inputs:
            raise SystemExit("zerollm tokenizer train: give at least one input file")
        tok = api.tokenizer_train(inputs, args.out, vocab_size=args.vocab_size,
                                  pattern=resolve_pattern(args.pattern) if args.pattern else None,
                                  text_field=args.text_field, algorithm=args.algorithm)
        print(f"tokenizer: {args.algorithm}, {tok.vocab_size} tokens → {args.out}")
    elif args.stage == "data":
        from zerollm.data.prepare import prepare_summary

        manifest = api.data_prepare(args.inputs, args.tokenizer, args.out, text_field=args.text_field,
                                    val_fraction=args.val_fraction, num_workers=args.workers)
        print(prepare_summary(manifest))
    elif args.stage == "pretrain":
        overrides = list(rest) + list(args.overrides)
        for key in ("data", "out", "preset"):
            if getattr(args, key):
                overrides.append(f"{key}={getattr(args, key)}")
        if args.resume:
            overrides.append("resume=true")
        summary = api.pretrain(args.config, overrides)
        if summary.get("run_dir"):
            print(f"run: {summary['run_dir']}/report.md")
    elif args.stage in POSTTRAIN_STAGES:
        overrides = list(rest) + list(args.overrides)
        for key in ("model", "out"):
            if getattr(args, key):
                overrides.append(f"{key}={getattr(args, key)}")
        if getattr(args, "reward_model", None):
            overrides.append(f"reward_model={args.reward_model}")
        cli = {"data": args.data} if args.data else {}
        for flag in ("lora", "qlora", "resume"):
            if getattr(args, flag):
                overrides.append(f"{flag}=true")
        from zerollm.config import parse_overrides

        from zerollm.data.sources import DataError

        try:
            summary = getattr(api, args.stage)(args.config, {**cli, **parse_overrides(overrides)})
        except DataError as e:
            raise ValueError(str(e)) from None
        print(f"run: {summary['run_dir']}/report.md")
    elif args.stage == "generate":
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop_strings=args.stop,
                  seed=args.seed, device=args.device,
                  min_p=args.min_p, presence_penalty=args.presence_penalty,
                  frequency_penalty=args.frequency_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
                  logit_bias={int(k): float(v) for k, v in (x.split("=") for x in args.logit_bias)} or None,
                  num_beams=args.num_beams, length_penalty=args.length_penalty,
                  early_stopping={"true": True, "false": False}.get(args.early_stopping, "never"),
                  num_return_sequences=args.num_return_sequences, logprobs=args.logprobs,
                  json_schema=args.json_schema, regex=args.regex)
        if args.draft:
            kw.update(draft=args.draft, draft_tokens=args.draft_tokens)
        if args.num_beams > 1 or args.num_return_sequences > 1 or args.logprobs is not None \
                or args.json_schema or args.regex or args.draft:
            args.no_stream = True  # these print whole completions
        if args.no_stream:
            print(prompt + api.generate(args.model, prompt, **kw))
        else:
            sys.stdout.write(prompt)
            for piece in api.generate(args.model, prompt, stream=True, **kw):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
    elif args.stage == "quantize":
        out_scheme = None if args.output_scheme == "none" else args.output_scheme
        print(f"wrote {api.quantize(args.model, args.out, scheme=args.scheme, bits=args.bits, group_size=args.group_size, output_scheme=out_scheme)}")
    elif args.stage == "memory":
        print(api.memory(params=args.params, model=args.model, context=args.context, batch=args.batch))
    elif args.stage == "bench":
        import runpy
        from pathlib import Path

        script = Path(__file__).resolve().parents[2] / "bench" / "bench_decode.py"
        if not script.is_file():
            raise FileNotFoundError(f"{script}: the bench scripts live in the source checkout")
        threads = ["--threads", str(args.threads)] if args.threads is not None and "--threads" not in rest else []
        sys.argv = [str(script), *threads, *rest]
        runpy.run_path(str(script), run_name="__main__")
    elif args.stage == "quickstart":
        api.quickstart(corpus=args.corpus or [], minutes=args.minutes, preset=args.preset, out=args.out,
                       device=args.device)
    elif args.stage == "convert":
        out = api.convert(args.src, args.out, from_format=args.from_format, tokenizer=args.tokenizer)
        print(f"converted {args.src} → {out}")
    elif args.stage == "export":
        out = api.export(args.model, args.out, format=args.format, version=args.version, dtype=args.dtype,
                         tokenizer_out=args.tokenizer_out)
        print(f"exported {args.model} → {out} ({args.format})")
    elif args.stage == "serve":
        api.serve(args.model, host=args.host, port=args.port, api_key=args.api_key)
    elif args.stage == "model":
        from zerollm.config import model_config_from_preset
        from zerollm.model.transformer import Transformer

        if args.model:
            model, _ = api.load(args.model, device="cpu")
        else:
            model = Transformer(model_config_from_preset(args.preset or "gpt2-124m"))
        seq = args.seq_len or model.cfg.max_seq_len
        print(model.describe())
        print(f"parameters: {model.num_params():,} ({model.num_params(non_embedding=True):,} non-embedding)")
        print(f"FLOPs per token (forward+backward, T={seq}): {model.flops_per_token(seq):,.0f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.version:
        from zerollm import __version__

        print(__version__)
        return 0
    if not args.stage:
        parser.print_help()
        return 1
    if rest and args.stage not in ("pretrain", "bench") and args.stage not in POSTTRAIN_STAGES:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        return _run(args, rest)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"zerollm {args.stage}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
