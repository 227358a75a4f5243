"""Stages `eval` (benchmark tasks on a model) and `report` (the report card across runs).

    zerollm eval --model DIR --tasks piqa,jcommonsenseqa,gsm8k,jsquad,bpb,mc:FILE.jsonl,TASK.yaml
                 [--limit N] [--num-fewshot K] [--batch-size B] [--samples K] [--adapter LORA_DIR] --out DIR
    zerollm report RUN_DIR... --out card.md

`--model` is anything loading.load reads (checkpoint, run, Hugging Face directory, quantized checkpoint);
`--adapter` applies a PEFT LoRA adapter (posttrain/lora.py) on top. `--out` is an eval directory: running
again with the same settings resumes (finished items are kept), see eval/runner.py. The tasks live in
eval/tasks.py; the lm-evaluation-harness adapter in eval/harness.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import prepare_out


@dataclass
class EvalConfig:
    model: str = field(default="", metadata={"required": True,
                                             "help": "checkpoint, run, quantized or Hugging Face model directory"})
    tasks: str = field(default="piqa", metadata={"help": "comma-separated: piqa, jcommonsenseqa, gsm8k, jsquad, "
                                                         "bpb, bpb_ja, mc:FILE.jsonl, bpb:FILE, TASK.yaml"})
    out: str = field(default="", metadata={"required": True, "help": "eval directory (resumable)"})
    limit: int | None = field(default=None, metadata={"help": "first N items of each task"})
    num_fewshot: int = 0
    batch_size: int = field(default=16, metadata={"help": "sequences per forward pass"})
    samples: int = field(default=1, metadata={"help": "generative tasks: K sampled answers, majority vote "
                                                      "(self-consistency); 1 = greedy"})
    adapter: str | None = field(default=None, metadata={"help": "PEFT LoRA adapter directory to apply"})
    data_dir: str | None = field(default=None, metadata={"help": "shared data directory (default ../shared/data)"})
    device: str = "cpu"
    seed: int = 0
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})


@dataclass
class ReportConfig:
    runs: list = field(default_factory=list, metadata={"positional": "+", "help": "run or eval directories"})
    out: str = field(default="report_card.md", metadata={"help": "markdown file (the PNG goes beside it)"})


def evaluate(model: str | Path, tasks: str | list = "piqa", out: str | Path = "", *, limit: int | None = None,
             num_fewshot: int = 0, batch_size: int = 16, samples: int = 1, adapter: str | None = None,
             data_dir: str | None = None, device: str = "cpu", seed: int = 0, overwrite: bool = False,
             show_progress: bool = True) -> list[dict]:
    """`zerollm eval`: returns each task's result (metrics, per-item records); writes them into `out`."""
    from zerollm.eval import evaluate as run_eval
    from zerollm.loading import load

    if not out:
        raise ValueError("give --out DIR for the results")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    if num_fewshot < 0 or batch_size < 1 or samples < 1:
        raise ValueError("--num-fewshot must be >= 0, --batch-size and --samples >= 1")
    prepare_out(out, "eval", overwrite=overwrite, inputs=[model] + ([adapter] if adapter else []))
    loaded = load(model, device)
    if adapter:
        from zerollm.posttrain.lora import load_adapter, strip_lora

        load_adapter(loaded.model, adapter)
        strip_lora(loaded.model)  # merged: W + (alpha/r) B A, plain Linear layers again
    return run_eval(loaded, tasks, out, limit=limit, num_fewshot=num_fewshot, batch_size=batch_size,
                    samples=samples, seed=seed, data_dir=data_dir, model_name=str(model),
                    show_progress=show_progress)


def eval_stage(c: EvalConfig) -> None:
    from zerollm.eval import results_table

    results = evaluate(c.model, c.tasks, c.out, limit=c.limit, num_fewshot=c.num_fewshot, batch_size=c.batch_size,
                       samples=c.samples, adapter=c.adapter, data_dir=c.data_dir, device=c.device, seed=c.seed,
                       overwrite=c.overwrite)
    print(results_table(results), end="")
    for r in results:
        if r["truncated"]:
            print(f"{r['task']}: {r['truncated']} requests (prompt + choice) were longer than the context and were "
                  f"cut from the left")
    print(f"results: {Path(c.out) / 'results.md'}")


def report(runs: list, out: str | Path = "report_card.md") -> str:
    """`zerollm report RUN_DIR... --out card.md`: the report card across runs (eval/report.py)."""
    from zerollm.eval.report import report_card

    return report_card(runs, out)


__all__ = ["EvalConfig", "ReportConfig", "eval_stage", "evaluate", "report"]
