"""`zerollm <stage> ...`: argument parsing and dispatch only; each stage lives in one module of zerollm/stages/.

Flags are built from the stages' config dataclasses (`config_flags`): a field `max_new_tokens` of
GenerationConfig is `generate --max-new-tokens`, a field `beta` of DPOConfig is `dpo --beta`. Stages that
train (`pretrain`, `sft`, `reward`, `dpo`, `grpo`, `ppo`) also take `--config FILE.yaml` and dotted overrides
such as `train.lr=3e-4` or `--train.lr=3e-4` after the named options (defaults < YAML < flags/overrides).
Every stage that reads a model takes it as `--model DIR` (a checkpoint, run or Hugging Face directory).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from zerollm import api
from zerollm.config import parse_overrides
from zerollm.data.sources import DataError
from zerollm.engine.generate import GenerationConfig
from zerollm.runtime import set_threads
from zerollm.stages.posttrain import DPOConfig, GRPOConfig, PPOConfig, RewardConfig, SFTConfig
from zerollm.stages.pretrain import PretrainConfig, QuickstartConfig


def _flag_type(f: dataclasses.Field):
    """(argparse type, is_list) from a dataclass field's annotation ('int | None', 'list', 'bool', ...)."""
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if ann.startswith("list"):
        return str, True
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if ann.split(" |")[0].strip() == name:
            return typ, False
    return None, False  # dicts, nested configs: dotted overrides only


def config_flags(p: argparse.ArgumentParser, cls, *, skip=(), rename=None, defaults=None, helps=None,
                 unset: bool = False, many=()) -> list[str]:
    """Add one `--flag` per simple (bool, int, float, str, list) field of dataclass `cls`; returns the field
    names. `unset`: flags default to None and only given ones count (training stages: defaults < YAML <
    flags). A list field is a repeatable flag (`many`: also several values after one flag)."""
    rename, defaults, helps = rename or {}, defaults or {}, helps or {}
    added = []
    for f in dataclasses.fields(cls):
        typ, is_list = _flag_type(f)
        if f.name in skip or typ is None:
            continue
        if unset:
            default = None
        elif f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"dest": f.name, "help": helps.get(f.name), "default": default}
        flag = "--" + rename.get(f.name, f.name).replace("_", "-")
        if typ is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif is_list:
            p.add_argument(flag, action="extend" if f.name in many else "append",
                           nargs="+" if f.name in many else None, **{**kw, "default": None})
        else:
            p.add_argument(flag, type=typ, **kw)
        added.append(f.name)
    return added


def _given(args, names: list[str], unset: bool = False) -> dict:
    """The values of config-built flags (`unset`: only those given on the command line)."""
    values = {n: getattr(args, n) for n in names}
    return {n: v for n, v in values.items() if v is not None} if unset else \
        {n: ([] if v is None and n in LIST_FIELDS else v) for n, v in values.items()}


LIST_FIELDS = ("corpus", "stop_strings")


# ---- stages --------------------------------------------------------------------------------------------------

TRAINING_STAGES = {
    "pretrain": (PretrainConfig, "train a model on token shards (torchrun-ready)"),
    "sft": (SFTConfig, "supervised chat fine-tuning (loss on assistant tokens)"),
    "reward": (RewardConfig, "reward model: scalar head + Bradley-Terry loss on preference pairs"),
    "dpo": (DPOConfig, "direct preference optimization against the start model"),
    "grpo": (GRPOConfig, "GRPO on verifiable rewards (GSM8K-style #### answers)"),
    "ppo": (PPOConfig, "PPO (RLHF) with a reward model, value head, KL penalty and GAE"),
}
POSTTRAIN_STAGES = {k: v[1] for k, v in TRAINING_STAGES.items() if k != "pretrain"}
_TRAIN_HELP = {"model": "start model: checkpoint, run or HF directory", "data": "data (repeatable)",
               "out": "run directory", "resume": "continue from the latest checkpoint in --out",
               "lora": "train LoRA adapters on a frozen base", "qlora": "LoRA over a 4-bit NF4 base",
               "reward_model": "run dir of `zerollm reward`"}

GEN_SKIP = ("stop_token_ids", "logit_bias", "early_stopping")
GEN_HELP = {"temperature": "0 = greedy", "num_beams": "> 1: beam search (deterministic)",
            "logprobs": "print each token's logprob and the top N", "stop_strings": "stop string (repeatable)"}


def _add_training(sub, fields: dict) -> None:
    for name, (cls, help_) in TRAINING_STAGES.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=None, help="YAML config (see configs/)")
        fields[name] = config_flags(p, cls, unset=True, helps=_TRAIN_HELP)
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 lora_config.r=16")


def _add_tokenizer_and_data(sub) -> None:
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
    t.add_argument("--overwrite", action="store_true", help="if --out exists and is not an output of this stage, move it aside")
    st = tsub.add_parser("stats", help="tokens per char/byte, vocab usage, top tokens, segmentation")
    st.add_argument("tokenizer", help="tokenizer directory")
    st.add_argument("files", nargs="+", help="held-out text files")
    cmp_ = tsub.add_parser("compare", help="compare tokenizers side by side on the same text")
    cmp_.add_argument("files", nargs="+", help="held-out text files")
    cmp_.add_argument("--tokenizer", action="append", required=True, help="tokenizer directory (repeat)")
    cmp_.add_argument("--html", default=None, help="also write an HTML page with the segmentations")
    p = sub.add_parser("data", help="prepare token shards")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("prepare", help="tokenize documents into shards + manifest + validation split")
    d.add_argument("inputs", nargs="+", help="text/.jsonl/.parquet files, directories or globs")
    d.add_argument("--tokenizer", required=True, help="tokenizer directory")
    d.add_argument("--out", required=True)
    d.add_argument("--overwrite", action="store_true", help="if --out exists and is not an output of this stage, move it aside")
    d.add_argument("--text-field", default="text")
    d.add_argument("--val-fraction", type=float, default=0.01)
    d.add_argument("--workers", type=int, default=2)


def _add_model_flag(p, required: bool = True, help_: str = "checkpoint, run or Hugging Face model directory"):
    p.add_argument("--model", required=required, help=help_)


def _add_generate(sub, fields: dict) -> None:
    g = sub.add_parser("generate", help="sample text from a model")
    _add_model_flag(g)
    g.add_argument("--prompt", default="", help="prompt text ('-' reads stdin)")
    fields["generate"] = config_flags(g, GenerationConfig, skip=GEN_SKIP, rename={"stop_strings": "stop"},
                                      defaults={"max_new_tokens": 200, "temperature": 0.8, "top_k": 0},
                                      helps=GEN_HELP)
    g.add_argument("--logit-bias", action="append", default=[], metavar="ID=BIAS", help="repeatable")
    g.add_argument("--early-stopping", default="false", choices=["true", "false", "never"])
    g.add_argument("--device", default="auto")
    g.add_argument("--no-stream", action="store_true")
    g.add_argument("--json-schema", default=None, help="JSON Schema file: output is valid JSON for it")
    g.add_argument("--regex", default=None, help="output must match this regex")
    g.add_argument("--draft", default=None, help="smaller model (same tokenizer) for speculative decoding")
    g.add_argument("--draft-tokens", type=int, default=4, help="tokens the draft proposes per target forward")


def _add_use(sub) -> None:
    c = sub.add_parser("chat", help="chat with a model in the terminal (streaming; /reset /system /save /load)")
    _add_model_flag(c)
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
    _add_model_flag(ra, required=False, help_="model to answer with; without it, print the passages")
    ra.add_argument("-k", type=int, default=4, help="passages to retrieve")
    ra.add_argument("--mode", default="auto", choices=["auto", "bm25", "dense", "hybrid"])
    ra.add_argument("--max-new-tokens", type=int, default=200)
    ra.add_argument("--device", default="auto")
    sv = sub.add_parser("serve", help="OpenAI-compatible API + chat page (http://HOST:PORT/)")
    _add_model_flag(sv)
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")


def _add_models(sub) -> None:
    q = sub.add_parser("quantize", help="write a weight-only int8/int4/NF4 checkpoint")
    _add_model_flag(q)
    q.add_argument("--out", required=True)
    q.add_argument("--overwrite", action="store_true", help="if --out exists and is not an output of this stage, move it aside")
    q.add_argument("--bits", type=int, choices=[8, 4], default=None)
    q.add_argument("--scheme", choices=["int8", "int4-sym", "int4-asym", "nf4"], default=None)
    q.add_argument("--group-size", type=int, default=32)
    q.add_argument("--output-scheme", choices=["int8", "int4-sym", "int4-asym", "nf4", "none"], default="int8",
                   help="scheme of the output projection (default int8; none keeps it float)")
    mem = sub.add_parser("memory", help="weight + KV-cache memory for fp32/bf16/int8/int4")
    mem.add_argument("--params", default=None, help="e.g. 7B, 124M")
    _add_model_flag(mem, required=False)
    mem.add_argument("--context", type=int, default=4096)
    mem.add_argument("--batch", type=int, default=1)
    c = sub.add_parser("convert", help="convert a Hugging Face dir or llama2.c .bin into a zerollm checkpoint")
    c.add_argument("--from", dest="from_format", choices=["hf", "llama2c"], default="hf")
    c.add_argument("src", nargs="?", default=None, help="the same as --model (kept for older scripts)")
    _add_model_flag(c, required=False, help_="HF model directory, or llama2.c .bin file")
    c.add_argument("--out", required=True, help="checkpoint directory to write")
    c.add_argument("--overwrite", action="store_true", help="if --out exists and is not an output of this stage, move it aside")
    c.add_argument("--tokenizer", default=None, help="llama2c: tokenizer .model or tokenizer.bin")
    e = sub.add_parser("export", help="export a model as a Hugging Face dir, GGUF or llama2.c .bin")
    e.add_argument("--format", required=True, choices=["hf", "gguf", "llama2c"])
    _add_model_flag(e)
    e.add_argument("--out", required=True, help="directory (hf) or file (gguf, llama2c) to write")
    e.add_argument("--overwrite", action="store_true", help="if --out exists and is not an output of this stage, move it aside")
    e.add_argument("--version", type=int, default=0, help="llama2c file version (0 = run.c's, 1)")
    e.add_argument("--dtype", default=None, help="hf: float32|bfloat16|float16; gguf: f32|f16")
    e.add_argument("--tokenizer-out", default=None, help="llama2c: where to write tokenizer.bin")
    info = sub.add_parser("model", help="inspect a model: parameters and FLOPs per token")
    info.add_argument("action", choices=["info"])
    info.add_argument("--preset", default=None)
    _add_model_flag(info, required=False)
    info.add_argument("--seq-len", type=int, default=None)
    b = sub.add_parser("bench", help="benchmarks (decode: ours beside transformers generate)")
    b.add_argument("what", choices=["decode"])


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser, and per config-built stage the [(field, dest)] its flags fill."""
    parser = argparse.ArgumentParser(prog="zerollm", description="build, train and use your own language models")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads for this command (default: torch's, one per core). On a machine "
                             "where other jobs hold cores, 1 avoids stalls: every parallel region waits for its "
                             "slowest thread")
    sub = parser.add_subparsers(dest="stage")
    fields: dict = {}
    _add_tokenizer_and_data(sub)
    _add_training(sub, fields)
    _add_generate(sub, fields)
    _add_use(sub)
    _add_models(sub)
    qs = sub.add_parser("quickstart", help="tokenizer + data + pretrain + samples in ~5 minutes")
    fields["quickstart"] = config_flags(qs, QuickstartConfig, many=("corpus",), helps={
        "corpus": "your own text files instead of the Python docs"})
    return parser, fields


# ---- dispatch ------------------------------------------------------------------------------------------------

def _run_training(args, rest: list[str], fields: dict) -> int:
    overrides = {**_given(args, fields[args.stage], unset=True), **parse_overrides(list(rest) + list(args.overrides))}
    summary = getattr(api, args.stage)(args.config, overrides)
    if summary.get("run_dir"):
        print(f"run: {summary['run_dir']}/report.md")
    return 0


def _run_generate(args, fields: dict) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    kw = _given(args, fields["generate"])
    try:
        bias = {int(k): float(v) for k, v in (x.split("=") for x in args.logit_bias)} or None
    except ValueError:
        raise ValueError(f"--logit-bias takes ID=BIAS, got {args.logit_bias}") from None
    kw.update(device=args.device, logit_bias=bias, json_schema=args.json_schema, regex=args.regex,
              early_stopping={"true": True, "false": False}.get(args.early_stopping, "never"))
    if args.draft:
        kw.update(draft=args.draft, draft_tokens=args.draft_tokens)
    whole = (kw["num_beams"] > 1 or kw["num_return_sequences"] > 1 or kw["logprobs"] is not None
             or args.json_schema or args.regex or args.draft)  # these print whole completions
    if args.no_stream or whole:
        print(prompt + api.generate(args.model, prompt, **kw))
        return 0
    sys.stdout.write(prompt)
    for piece in api.generate(args.model, prompt, stream=True, **kw):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _run_rag(args) -> int:
    if args.action == "index":
        if not args.docs and not args.delete:
            raise ValueError("give documents to index and/or --delete SOURCE")
        index = api.rag_index(args.docs, args.out, embedder=args.embedder, max_chars=args.chunk_chars,
                              overlap=args.overlap, delete=args.delete)
        print(f"index: {len(index)} chunks from {len(index.sources)} sources → {args.out}")
        return 0
    result = api.rag_ask(args.index, args.question, model=args.model, k=args.k, mode=args.mode,
                         max_new_tokens=args.max_new_tokens, device=args.device,
                         stream=(lambda piece: (sys.stdout.write(piece), sys.stdout.flush())))
    if args.model:
        print()
        print("\n".join(f"[{c['n']}] {c['source']}" for c in result.citations))
    else:
        print(result.format())
    return 0


def _run_bench(args, rest: list[str]) -> int:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "bench_decode.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script}: the bench scripts live in the source checkout")
    threads = ["--threads", str(args.threads)] if args.threads is not None and "--threads" not in rest else []
    sys.argv = [str(script), *threads, *rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _run(args: argparse.Namespace, rest: list[str], fields: dict) -> int:
    stage = args.stage
    if stage in TRAINING_STAGES:
        return _run_training(args, rest, fields)
    if stage == "generate":
        return _run_generate(args, fields)
    if stage == "rag":
        return _run_rag(args)
    if stage == "bench":
        return _run_bench(args, rest)
    if stage == "tokenizer" and args.action == "stats":
        api.tokenizer_stats(args.tokenizer, args.files)
    elif stage == "tokenizer" and args.action == "compare":
        api.tokenizer_compare(args.tokenizer, args.files, html_out=args.html)
    elif stage == "tokenizer":
        from zerollm.tokenizer.pretokenize import resolve_pattern

        inputs = list(args.inputs) + list(args.input)
        if not inputs:
            raise ValueError("give at least one input file")
        tok = api.tokenizer_train(inputs, args.out, vocab_size=args.vocab_size,
                                  pattern=resolve_pattern(args.pattern) if args.pattern else None,
                                  text_field=args.text_field, algorithm=args.algorithm, overwrite=args.overwrite)
        print(f"tokenizer: {args.algorithm}, {tok.vocab_size} tokens → {args.out}")
    elif stage == "data":
        from zerollm.stages.data import prepare_summary

        manifest = api.data_prepare(args.inputs, args.tokenizer, args.out, text_field=args.text_field,
                                    val_fraction=args.val_fraction, num_workers=args.workers,
                                    overwrite=args.overwrite)
        print(prepare_summary(manifest))
    elif stage == "chat":
        api.chat(args.model, system=args.system, device=args.device, max_new_tokens=args.max_new_tokens,
                 temperature=args.temperature, seed=args.seed)
    elif stage == "serve":
        api.serve(args.model, host=args.host, port=args.port, api_key=args.api_key)
    elif stage == "quantize":
        out_scheme = None if args.output_scheme == "none" else args.output_scheme
        out = api.quantize(args.model, args.out, scheme=args.scheme, bits=args.bits, group_size=args.group_size,
                           output_scheme=out_scheme, overwrite=args.overwrite)
        print(f"wrote {out}")
    elif stage == "memory":
        print(api.memory(params=args.params, model=args.model, context=args.context, batch=args.batch))
    elif stage == "convert":
        src = args.model or args.src
        if src is None or (args.model and args.src):
            raise ValueError("give the model to convert once: --model SRC")
        out = api.convert(src, args.out, from_format=args.from_format, tokenizer=args.tokenizer,
                          overwrite=args.overwrite)
        print(f"converted {src} → {out}")
    elif stage == "export":
        out = api.export(args.model, args.out, format=args.format, version=args.version, dtype=args.dtype,
                         tokenizer_out=args.tokenizer_out, overwrite=args.overwrite)
        print(f"exported {args.model} → {out} ({args.format})")
    elif stage == "model":
        print(api.model_info(preset=args.preset, model=args.model, seq_len=args.seq_len))
    elif stage == "quickstart":
        api.quickstart(api.QuickstartConfig(**_given(args, fields["quickstart"])))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, fields = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.version:
        from zerollm import __version__

        print(__version__)
        return 0
    if not args.stage:
        parser.print_help()
        return 1
    if rest and args.stage not in TRAINING_STAGES and args.stage != "bench":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        set_threads(args.threads)
        return _run(args, rest, fields)
    except (ValueError, FileNotFoundError, FileExistsError, DataError) as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line
        print(f"zerollm {args.stage}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
