"""Evaluation: benchmark tasks on any model zerollm loads, and the report card across a chain of runs.

    tasks.py    the task registry (PIQA, JCommonsenseQA, GSM8K, JSQuAD, bits per byte, JSONL / YAML tasks)
    lm.py       Scorer: batched log-likelihoods (lm-eval's tokenization), rolling log-likelihoods,
                generation through engine.Engine
    metrics.py  acc / acc_norm / exact match / char F1 / GSM8K answer extraction, mean ± standard error
    runner.py   run_task: resumable per-item records, task JSON, markdown table
    report.py   the report card: eval.json of each run → one markdown table + one PNG
    harness.py  the lm-evaluation-harness adapter (`lm_eval --model zerollm`)

`evaluate(loaded, tasks, out)` is what `zerollm eval` runs; `evaluate_run(run_dir, tasks)` is the hook a
training stage calls when its config says `train.eval_tasks=...` (rundir.finish_report) and `zerollm quantize
--eval-tasks` calls on its output; `write_eval_json` writes the eval.json `zerollm report` reads.
"""
from __future__ import annotations

import json
from pathlib import Path

from zerollm.artifacts import atomic_write_text, write_manifest
from zerollm.eval.lm import Scorer, bits_per_byte
from zerollm.eval.runner import results_table, run_task, summary
from zerollm.eval.tasks import BUILTIN, Task, get_task


def parse_tasks(tasks: str | list) -> list[str]:
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t and t.strip()]
    if not names:
        raise ValueError("give at least one task: --tasks piqa,jcommonsenseqa,...")
    return names


def evaluate(loaded, tasks: str | list, out: str | Path, *, limit: int | None = None, num_fewshot: int = 0,
             batch_size: int = 16, samples: int = 1, seed: int = 0, data_dir: str | None = None,
             model_name: str = "", show_progress: bool = True) -> list[dict]:
    """Run `tasks` on a `loading.Loaded` model; write per-task JSON, results.json and results.md into `out`
    (an eval directory: resumable, see runner.py). Returns the task results."""
    if loaded.tokenizer is None:
        raise FileNotFoundError(f"{loaded.path}: the model has no tokenizer; evaluation needs one")
    specs = [get_task(t, data_dir) for t in parse_tasks(tasks)]  # every task file checked before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "manifest.json").is_file():
        write_manifest(out, "eval", model=model_name or str(loaded.path))
    scorer = Scorer(loaded.model, loaded.tokenizer, batch_size=batch_size)
    results = [run_task(t, scorer, out, limit=limit, num_fewshot=num_fewshot, samples=samples, seed=seed,
                        model_name=model_name or str(loaded.path), show_progress=show_progress) for t in specs]
    atomic_write_text(out / "results.json", json.dumps(summary(results), ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out / "results.md", results_table(results))
    return results


def evaluate_run(run_dir: str | Path, tasks: str, limit: int | None = 200) -> str:
    """A training stage's own evaluation (`train.eval_tasks=...`): its final model (run_dir/model, else the
    latest checkpoint) on `tasks`, into run_dir/eval/ and run_dir/eval.json; returns the markdown table."""
    from zerollm.loading import load

    run_dir = Path(run_dir)
    model_dir = run_dir / "model" if (run_dir / "model" / "model.safetensors").is_file() else run_dir
    results = evaluate(load(model_dir), tasks, run_dir / "eval", limit=limit, model_name=str(model_dir))
    write_eval_json(run_dir, results)
    return results_table(results)


def write_eval_json(run_dir: str | Path, results: list[dict]) -> Path:
    """run_dir/eval.json, what `zerollm report` reads: {task: {"task", "n", "metrics": {name: {"value",
    "stderr"}}, ...}} (runner.run_task's result without its per-item records). A stage that scores its result
    its own way (translate: test BLEU/chrF) writes its results in this form through here too."""
    path = Path(run_dir) / "eval.json"
    atomic_write_text(path, json.dumps(summary(results), ensure_ascii=False, indent=1) + "\n")
    return path


__all__ = [
    "BUILTIN",
    "Scorer",
    "Task",
    "bits_per_byte",
    "evaluate",
    "evaluate_run",
    "get_task",
    "parse_tasks",
    "results_table",
    "write_eval_json",
]
