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
import traceback

from zerollm import api
from zerollm.config import parse_overrides
from zerollm.errors import ZeroLLMError
from zerollm.engine.generate import GenerationConfig
from zerollm.engine.hf_generate import resolve_sampling
from zerollm.runtime import end_auto_threads, set_threads
from zerollm.stages.chat import ChatConfig
from zerollm.stages.convert import ConvertConfig, ExportConfig
from zerollm.stages.data import DataPrepareConfig, prepare_summary
from zerollm.stages.eval import EvalConfig, ReportConfig, eval_stage
from zerollm.stages.generate import GenerateConfig
from zerollm.stages.checkpoint import ConsolidateConfig
from zerollm.stages.model import ModelInfoConfig
from zerollm.stages.posttrain import DPOConfig, GRPOConfig, PPOConfig, RewardConfig, SFTConfig
from zerollm.stages.pretrain import PretrainConfig, QuickstartConfig
from zerollm.stages.quantize import MemoryConfig, QuantizeConfig
from zerollm.stages.rag import RagAskConfig, RagIndexConfig
from zerollm.stages.scaling import EstimateConfig, ScalingFitConfig, SweepConfig
from zerollm.stages.serve import ServeConfig
from zerollm.stages.tokenizer import TokenizerCompareConfig, TokenizerStatsConfig, TokenizerTrainConfig
from zerollm.stages.translate import TranslateConfig, TranslateTrainConfig, translate_stage
from zerollm.tokenizer.pretokenize import resolve_pattern


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
    """Add one argument per simple (bool, int, float, str, list) field of dataclass `cls`; returns the field
    names. A field's metadata may say: "positional" (True, or an nargs such as "+"), "required", "choices",
    "flag" (another spelling, e.g. "--from"), "help", "metavar". `unset`: flags default to None and only given
    ones count (training stages: defaults < YAML < flags). A list field is a repeatable flag (`many`: also
    several values after one flag)."""
    rename, defaults, helps = rename or {}, defaults or {}, helps or {}
    added = []
    for f in dataclasses.fields(cls):
        typ, is_list = _flag_type(f)
        if f.name in skip or typ is None:
            continue
        meta = f.metadata
        if unset:
            default = None
        elif f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"help": helps.get(f.name, meta.get("help"))}
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if meta.get("positional"):
            nargs = meta["positional"] if meta["positional"] is not True else None
            p.add_argument(f.name, nargs=nargs, default=default, **({} if is_list else {"type": typ}), **kw)
            added.append(f.name)
            continue
        flag = meta.get("flag") or "--" + rename.get(f.name, f.name).replace("_", "-")
        kw.update(dest=f.name, default=default)
        if meta.get("required") and not unset:
            kw["required"] = True
        if typ is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif is_list:
            p.add_argument(flag, action="extend" if f.name in many else "append",
                           nargs="+" if f.name in many else None, **{**kw, "default": None})
        else:
            p.add_argument(flag, type=typ, **kw)
        added.append(f.name)
    return added


def _given(args, names: list[str]) -> dict:
    """The training-stage flags given on the command line (built with `unset=True`: the rest are None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _config(args, cls, names=None):
    """A stage config dataclass from parsed arguments (`names`: only those fields; a repeatable flag never
    given is its empty list)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name) and (names is None or f.name in names):
            v = getattr(args, f.name)
            values[f.name] = [] if v is None and _flag_type(f)[1] else v
    return cls(**values)


# ---- stages --------------------------------------------------------------------------------------------------

TRAINING_STAGES = {
    "pretrain": (PretrainConfig, "train a model on token shards (torchrun-ready)"),
    "sft": (SFTConfig, "supervised chat fine-tuning (loss on assistant tokens)"),
    "reward": (RewardConfig, "reward model: scalar head + Bradley-Terry loss on preference pairs"),
    "dpo": (DPOConfig, "direct preference optimization against the start model"),
    "grpo": (GRPOConfig, "GRPO on verifiable rewards (GSM8K-style #### answers)"),
    "ppo": (PPOConfig, "PPO (RLHF) with a reward model, value head, KL penalty and GAE"),
    # `zerollm translate train ...` (main() spells it translate_train for the parser)
    "translate_train": (TranslateTrainConfig, "train an encoder-decoder translation model (zerollm translate train)"),
}
POSTTRAIN_STAGES = {k: v[1] for k, v in TRAINING_STAGES.items() if k not in ("pretrain", "translate_train")}
_TRAIN_HELP = {"model": "start model: checkpoint, run or HF directory", "data": "data (repeatable)",
               "out": "run directory", "resume": "continue from the latest checkpoint in --out",
               "lora": "train LoRA adapters on a frozen base", "qlora": "LoRA over a 4-bit NF4 base",
               "reward_model": "run dir of `zerollm reward`"}

GEN_SKIP = ("stop_token_ids", "logit_bias", "early_stopping")
GEN_HELP = {"temperature": "> 0 samples (default: greedy, as transformers)",
            "top_k": "default 50 when sampling; 0 = off", "num_beams": "> 1: beam search (deterministic)",
            "logprobs": "print each token's logprob and the top N", "stop_strings": "stop string (repeatable)"}


def _tokenizer_train(c: TokenizerTrainConfig) -> None:
    tok = api.tokenizer_train(c.inputs, c.out, vocab_size=c.vocab_size, text_field=c.text_field,
                              pattern=resolve_pattern(c.pattern) if c.pattern else None, algorithm=c.algorithm,
                              overwrite=c.overwrite)
    print(f"tokenizer: {c.algorithm}, {tok.vocab_size} tokens → {c.out}")


def _data_prepare(c: DataPrepareConfig) -> None:
    manifest = api.data_prepare(c.inputs, c.tokenizer, c.out, text_field=c.text_field, val_fraction=c.val_fraction,
                                num_workers=c.workers, overwrite=c.overwrite)
    print(prepare_summary(manifest))


def _rag_index(c: RagIndexConfig) -> None:
    if not c.docs and not c.delete:
        raise ValueError("give documents to index and/or --delete SOURCE")
    index = api.rag_index(c.docs, c.out, embedder=c.embedder, max_chars=c.chunk_chars, overlap=c.overlap,
                          delete=c.delete)
    print(f"index: {len(index)} chunks from {len(index.sources)} sources → {c.out}")


def _rag_ask(c: RagAskConfig) -> None:
    result = api.rag_ask(c.index, c.question, model=c.model, k=c.k, mode=c.mode, max_new_tokens=c.max_new_tokens,
                         device=c.device, stream=(lambda piece: (sys.stdout.write(piece), sys.stdout.flush())))
    if c.model:
        print()
        print("\n".join(f"[{x['n']}] {x['source']}" for x in result.citations))
    else:
        print(result.format())


def _quantize(c: QuantizeConfig) -> None:
    out = api.quantize(c.model, c.out, scheme=c.scheme, bits=c.bits, group_size=c.group_size,
                       output_scheme=None if c.output_scheme == "none" else c.output_scheme, overwrite=c.overwrite,
                       eval_tasks=c.eval_tasks, eval_limit=c.eval_limit)
    print(f"wrote {out}" + (f" (evaluation: {out / 'eval.json'})" if c.eval_tasks else ""))


def _convert(c: ConvertConfig) -> None:
    src = c.model or c.src
    if src is None or (c.model and c.src):
        raise ValueError("give the model to convert once: --model SRC")
    out = api.convert(src, c.out, from_format=c.from_format, tokenizer=c.tokenizer, overwrite=c.overwrite)
    print(f"converted {src} → {out}")


def _export(c: ExportConfig) -> None:
    out = api.export(c.model, c.out, format=c.format, version=c.version, dtype=c.dtype,
                     tokenizer_out=c.tokenizer_out, overwrite=c.overwrite)
    print(f"exported {c.model} → {out} ({c.format})")


def _scaling_sweep(c: SweepConfig) -> None:
    rows = api.scaling_sweep(c)
    print(f"sweep: {len(rows)} finished points → {c.out}/points.jsonl; next: zerollm scaling fit {c.out}")


def _scaling_fit(c: ScalingFitConfig) -> None:
    from zerollm.stages.scaling import fit_summary

    fit = api.scaling_fit(c.sweep, c.out, n_key=c.n_key, bootstrap=c.bootstrap, seed=c.seed)
    print(fit_summary(fit))
    print(f"report: {c.out or c.sweep}/fit.md")


# stage → {action (None: no action word) → (config dataclass, what runs it, help)}
STAGES = {
    "tokenizer": {"train": (TokenizerTrainConfig, _tokenizer_train,
                            "train a tokenizer (byte-level BPE, WordPiece, Unigram, SentencePiece-BPE)"),
                  "stats": (TokenizerStatsConfig, lambda c: api.tokenizer_stats(c.tokenizer, c.files),
                            "tokens per char/byte, vocab usage, top tokens, segmentation"),
                  "compare": (TokenizerCompareConfig,
                              lambda c: api.tokenizer_compare(c.tokenizer, c.files, html_out=c.html),
                              "compare tokenizers side by side on the same text")},
    "data": {"prepare": (DataPrepareConfig, _data_prepare,
                         "tokenize documents into shards + manifest + validation split")},
    "chat": {None: (ChatConfig, lambda c: api.chat(c.model, system=c.system, device=c.device, seed=c.seed,
                                                   max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                                                   max_history=c.max_history, tools=c.tools,
                                                   max_tool_steps=c.max_tool_steps),
                    "chat with a model in the terminal (streaming; /reset /system /save /load)")},
    "rag": {"index": (RagIndexConfig, _rag_index,
                      "build or update an index from .txt/.md/.html/.jsonl files or directories"),
            "ask": (RagAskConfig, _rag_ask, "answer a question with numbered citations")},
    "serve": {None: (ServeConfig, lambda c: api.serve(c.model, host=c.host, port=c.port, api_key=c.api_key,
                                                     tools=c.tools),
                     "OpenAI-compatible API + chat page (http://HOST:PORT/)")},
    "quantize": {None: (QuantizeConfig, _quantize, "write a weight-only int8/int4/NF4 checkpoint")},
    "memory": {None: (MemoryConfig, lambda c: print(api.memory(params=c.params, model=c.model, context=c.context,
                                                               batch=c.batch)),
                      "weight + KV-cache memory for fp32/bf16/int8/int4")},
    "convert": {None: (ConvertConfig, _convert,
                       "convert a Hugging Face dir or llama2.c .bin into a zerollm checkpoint")},
    "export": {None: (ExportConfig, _export, "export a model as a Hugging Face dir, GGUF or llama2.c .bin")},
    "eval": {None: (EvalConfig, eval_stage, "benchmark tasks (PIQA, JCommonsenseQA, GSM8K, JSQuAD, bits per byte, "
                                            "your JSONL/YAML) on any model; resumable")},
    "report": {None: (ReportConfig, lambda c: print(api.report(c.runs, c.out), end=""),
                      "report card: one table + chart across runs (their eval.json), nothing re-run")},
    "translate": {None: (TranslateConfig, translate_stage,
                         "translate a sentence or a file with an encoder-decoder (`translate train` trains one)")},
    "model": {"info": (ModelInfoConfig, lambda c: print(api.model_info(preset=c.preset, model=c.model,
                                                                       seq_len=c.seq_len)),
                       "a model's architecture, parameters and FLOPs per token")},
    "checkpoint": {"consolidate": (ConsolidateConfig, lambda c: print(
        f"consolidated → {api.checkpoint_consolidate(c.path, c.out, overwrite=c.overwrite)}"),
        "a sharded (FSDP) checkpoint → one model.safetensors for the engine, export and HF")},
    "scaling": {"sweep": (SweepConfig, _scaling_sweep, "train a grid or IsoFLOP sweep of model sizes x token "
                                                       "budgets (resumable; --workers N in parallel)"),
                "fit": (ScalingFitConfig, _scaling_fit, "fit L(N, D) = E + A/N^a + B/D^b and IsoFLOP minima: "
                                                         "plots + report")},
    "estimate": {None: (EstimateConfig, lambda c: print(api.estimate(c)),
                        "plan a run: FLOPs, memory per device, time, cost, predicted loss")},
}
GROUP_HELP = {"tokenizer": "train or inspect tokenizers", "data": "prepare token shards",
              "rag": "retrieval-augmented answers from your documents",
              "model": "inspect a model: parameters and FLOPs per token",
              "checkpoint": "sharded checkpoints of distributed runs",
              "scaling": "scaling laws on your own data: sweep, then fit"}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser, and per config-built stage the fields its flags fill."""
    parser = argparse.ArgumentParser(prog="zerollm", description="build, train and use your own language models")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads for this command (default: torch's, one per core). On a machine "
                             "where other jobs hold cores, 1 avoids stalls: every parallel region waits for its "
                             "slowest thread")
    sub = parser.add_subparsers(dest="stage")
    fields: dict = {}
    for name, (cls, help_) in TRAINING_STAGES.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", default=None, help="YAML config (see configs/)")
        fields[name] = config_flags(p, cls, unset=True, helps=_TRAIN_HELP, many=getattr(cls, "MANY_FLAGS", ()))
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 lora_config.r=16")
    g = sub.add_parser("generate", help="sample text from a model")
    config_flags(g, GenerateConfig)
    fields["generate"] = config_flags(g, GenerationConfig, skip=GEN_SKIP, rename={"stop_strings": "stop"},
                                      defaults={"max_new_tokens": None, "temperature": None},
                                      helps=GEN_HELP)
    qs = sub.add_parser("quickstart", help="tokenizer + data + pretrain + samples in ~5 minutes")
    config_flags(qs, QuickstartConfig, many=("corpus",), helps={
        "corpus": "your own text files instead of the Python docs"})
    for stage, actions in STAGES.items():
        if None in actions:
            cls, _, help_ = actions[None]
            config_flags(sub.add_parser(stage, help=help_), cls)
            continue
        group = sub.add_parser(stage, help=GROUP_HELP[stage]).add_subparsers(dest="action", required=True)
        for action, (cls, _, help_) in actions.items():
            config_flags(group.add_parser(action, help=help_), cls)
    b = sub.add_parser("bench", help="benchmarks (decode: ours beside transformers generate)")
    b.add_argument("what", choices=["decode"])
    return parser, fields


# ---- dispatch ------------------------------------------------------------------------------------------------

def _in_order(argv: list[str], items: list[str]) -> list[str]:
    """Dotted overrides in the order they were typed (argparse splits them into two lists around named
    options), so a repeated key's latest value wins."""
    pending = list(items)
    ordered = [a for a in argv if a in pending and not pending.remove(a)]
    return ordered + pending


def _run_training(args, rest: list[str], fields: dict) -> int:
    typed = _in_order(args.argv, list(rest) + list(args.overrides))
    overrides = {**_given(args, fields[args.stage]), **parse_overrides(typed)}
    summary = getattr(api, args.stage)(args.config, overrides)
    if summary.get("run_dir"):
        print(f"run: {summary['run_dir']}/report.md")
    return 0


def _run_generate(args, fields: dict) -> int:
    c = _config(args, GenerateConfig)
    prompt = sys.stdin.read() if c.prompt == "-" else c.prompt
    # the same defaults as zerollm.api.generate and transformers: greedy unless --do-sample or a temperature
    resolved = resolve_sampling(c.do_sample or None, args.temperature, args.top_k, args.top_p, args.min_p)
    vars(args).update(vars(resolved))
    new_tokens = args.max_new_tokens  # None: 200, or what --max-length leaves after the prompt
    args.max_new_tokens = 200 if new_tokens is None else new_tokens
    sampling = _config(args, GenerationConfig, fields["generate"])  # validated here, passed on as keywords
    kw = {name: getattr(sampling, name) for name in fields["generate"]}
    if new_tokens is None and c.max_length is not None:
        kw.update(max_new_tokens=None, max_length=c.max_length)
    try:
        bias = {int(k): float(v) for k, v in (x.split("=") for x in c.logit_bias)} or None
    except ValueError:
        raise ValueError(f"--logit-bias takes ID=BIAS, got {c.logit_bias}") from None
    kw.update(device=c.device, logit_bias=bias, json_schema=c.json_schema, regex=c.regex,
              early_stopping={"true": True, "false": False}.get(c.early_stopping, "never"))
    if c.draft:
        kw.update(draft=c.draft, draft_tokens=c.draft_tokens)
    whole = (kw["num_beams"] > 1 or kw["num_return_sequences"] > 1 or kw["logprobs"] is not None
             or c.json_schema or c.regex or c.draft)  # these print whole completions
    if not c.stream or whole:
        out = api.generate(c.model, prompt, **kw)
        print("\n---\n".join(prompt + text for text in ([out] if isinstance(out, str) else out)))
        return 0
    sys.stdout.write(prompt)
    for piece in api.generate(c.model, prompt, stream=True, **kw):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
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
    if args.stage in TRAINING_STAGES:
        return _run_training(args, rest, fields)
    if args.stage == "generate":
        return _run_generate(args, fields)
    if args.stage == "bench":
        return _run_bench(args, rest)
    if args.stage == "quickstart":
        api.quickstart(_config(args, QuickstartConfig))
        return 0
    cls, run, _ = STAGES[args.stage][getattr(args, "action", None)]
    run(_config(args, cls))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, fields = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    stage_at = next((k for k, word in enumerate(argv) if not word.startswith("-")
                     and (k == 0 or argv[k - 1] != "--threads")), None)  # the stage word
    if stage_at is not None and argv[stage_at:stage_at + 2] == ["translate", "train"]:
        argv[stage_at:stage_at + 2] = ["translate_train"]  # `translate train` is the training stage translate_train
    args, rest = parser.parse_known_args(argv)
    args.argv = argv
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
    except (ZeroLLMError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError) as e:  # the CLI's error contract (zerollm/errors.py): one line, exit 2
        if args.debug:
            traceback.print_exc()
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in message:
            message = f"{e.filename}: {message}"
        print(f"zerollm {args.stage}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        end_auto_threads()  # measuring threads applies to this command only (cli.main may be called in-process)


if __name__ == "__main__":
    raise SystemExit(main())
