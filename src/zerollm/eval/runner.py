"""Run tasks on a model and write the results; resumable item by item.

    out/
      <task>.items.jsonl   one record per finished item, appended as chunks finish (an interrupted run keeps
                           them; the next run with the same settings scores only the rest)
      <task>.settings.json what the items were scored with (a resume with other settings is an error)
      <task>.json          the task's metrics (mean ± standard error), truncation count, timing, records
      results.json         every task's metrics; results.md: the same as a markdown table

Few-shot contexts follow lm-eval: description + Σ (example prompt + delimiter + example answer + "\\n\\n") +
the item's prompt. Examples are drawn, seeded by the item's index, from the task's few-shot pool (its train
split) or, when it has none, from the other evaluation items.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from zerollm.artifacts import atomic_write_text
from zerollm.chat.prompts import majority_vote
from zerollm.eval.lm import Scorer, bits_per_byte
from zerollm.eval.metrics import (
    char_f1,
    exact_match,
    gsm8k_flexible,
    gsm8k_strict,
    mc_scores,
    mean_stderr,
)
from zerollm.eval.tasks import Task

CHUNK = 64  # items scored (and appended to the items file) at a time


def _shots(task: Task, i: int, k: int) -> list[dict]:
    if k <= 0:
        return []
    pool = task.fewshot_pool if task.fewshot_pool else task.items
    candidates = [j for j in range(len(pool)) if pool is not task.items or j != i]
    return [pool[j] for j in random.Random(1234 + i).sample(candidates, min(k, len(candidates)))]


def build_context(task: Task, i: int, k: int) -> str:
    item = task.items[i]
    text = task.description
    for ex in _shots(task, i, k):
        if task.kind == "multiple_choice":
            text += ex["context"] + task.delimiter + ex["choices"][ex["label"]] + "\n\n"
        else:
            text += ex["prompt"] + task.delimiter + ex["shot"] + "\n\n"
    return text + (item["context"] if task.kind == "multiple_choice" else item["prompt"])


def _score_chunk(task: Task, scorer: Scorer, idx: list[int], k: int, samples: int, seed: int) -> list[dict]:
    items = task.items
    if task.kind == "multiple_choice":
        reqs, owner = [], []
        for i in idx:
            ctx = build_context(task, i, k)
            for c in items[i]["choices"]:
                reqs.append((ctx, task.delimiter + c))
                owner.append(i)
        scores = scorer.loglikelihood(reqs)
        recs = {i: {"i": i, "line": items[i].get("line"), "label": items[i]["label"], "lls": []} for i in idx}
        for i, (ll, _) in zip(owner, scores):
            recs[i]["lls"].append(ll)
        for r in recs.values():
            r.update(mc_scores(r["lls"], items[r["i"]]["choices"], r["label"]))
        return [recs[i] for i in idx]
    if task.kind == "bpb":
        texts = [items[i]["text"] for i in idx]
        lls = scorer.loglikelihood_rolling(texts)
        return [{"i": i, "loglik": ll, "bytes": len(t.encode("utf-8")), "tokens": len(scorer.tokenizer.encode(t))}
                for i, t, ll in zip(idx, texts, lls)]
    prompts = [build_context(task, i, k) for i in idx]
    outs = scorer.generate(prompts, until=task.until, max_new_tokens=task.max_new_tokens,
                           temperature=0.7 if samples > 1 else 0.0, n=max(1, samples), seed=seed)
    recs = []
    for i, texts in zip(idx, outs):
        golds, text = items[i]["targets"], texts[0]
        r = {"i": i, "line": items[i].get("line"), "targets": golds, "output": text}
        if task.metric == "gsm8k":
            r["strict_match"] = float(gsm8k_strict(text) in golds)
            r["flexible_match"] = float(gsm8k_flexible(text) in golds)
        elif task.metric == "squad":
            r["exact_match"], r["char_f1"] = exact_match(text, golds), char_f1(text, golds)
        else:
            r["exact_match"] = exact_match(text, golds)
        if samples > 1:  # self-consistency (Wang et al. 2023): majority vote over k sampled answers
            extract = gsm8k_flexible if task.metric == "gsm8k" else str.strip
            vote, votes = majority_vote([extract(t) for t in texts])
            r.update(samples=texts, votes=votes, **{f"maj@{samples}": float(vote in golds)})
        recs.append(r)
    return recs


METRIC_KEYS = ("acc", "acc_norm", "strict_match", "flexible_match", "exact_match", "char_f1")


def aggregate(task: Task, records: list[dict]) -> dict:
    """{metric: {"value", "stderr"}} over the item records."""
    if task.kind == "bpb":
        ll, nb = sum(r["loglik"] for r in records), sum(r["bytes"] for r in records)
        nt = sum(r["tokens"] for r in records)
        return {"bits_per_byte": {"value": bits_per_byte(ll, nb), "stderr": None},
                "bytes_per_token": {"value": nb / max(1, nt), "stderr": None}}
    keys = [k for k in records[0] if k in METRIC_KEYS or k.startswith("maj@")] if records else []
    out = {}
    for key in keys:
        value, se = mean_stderr([r[key] for r in records])
        out[key] = {"value": value, "stderr": se}
    return out


def _read_records(path: Path) -> dict[int, dict]:
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption: that item is scored again
            done[rec["i"]] = rec
    return done


def run_task(task: Task, scorer: Scorer, out: Path, *, limit: int | None = None, num_fewshot: int = 0,
             samples: int = 1, seed: int = 0, model_name: str = "", show_progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    n = len(task.items) if limit is None else min(limit, len(task.items))
    settings = {"task": task.name, "model": model_name, "num_fewshot": num_fewshot, "samples": samples,
                "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    settings_path, items_path = out / f"{task.name}.settings.json", out / f"{task.name}.items.jsonl"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        raise ValueError(f"{settings_path}: {out} holds {task.name} results scored with other settings "
                         f"({settings_path.read_text().strip()}); choose another --out")
    atomic_write_text(settings_path, json.dumps(settings) + "\n")
    done = {i: r for i, r in _read_records(items_path).items() if i < n}
    todo = [i for i in range(n) if i not in done]
    t0, before = time.perf_counter(), scorer.truncated
    bar = tqdm(total=n, initial=n - len(todo), desc=task.name, unit="item", disable=not show_progress)
    with open(items_path, "a", encoding="utf-8") as f:
        for b in range(0, len(todo), CHUNK):
            for rec in _score_chunk(task, scorer, todo[b:b + CHUNK], num_fewshot, samples, seed):
                done[rec["i"]] = rec
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                bar.update(1)
            f.flush()
    bar.close()
    records = [done[i] for i in range(n)]
    result = {"task": task.name, "kind": task.kind, "n": n, "num_fewshot": num_fewshot, "samples": samples,
              "metrics": aggregate(task, records), "truncated": scorer.truncated - before,
              "resumed_items": n - len(todo), "elapsed_s": round(time.perf_counter() - t0, 3),
              "model": model_name, "records": records}
    atomic_write_text(out / f"{task.name}.json", json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result


def fmt(v) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.4f}"


def results_table(results: list[dict]) -> str:
    lines = ["| task | metric | value | ± stderr | n | shots | truncated |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for name, m in r["metrics"].items():
            lines.append(f"| {r['task']} | {name} | {fmt(m['value'])} | {fmt(m['stderr'])} | {r['n']} | "
                         f"{r['num_fewshot']} | {r['truncated']} |")
    return "\n".join(lines) + "\n"


def summary(results: list[dict]) -> dict:
    """The results without per-item records (results.json, a run's eval.json)."""
    return {r["task"]: {k: v for k, v in r.items() if k != "records"} for r in results}


__all__ = ["aggregate", "build_context", "results_table", "run_task", "summary"]
