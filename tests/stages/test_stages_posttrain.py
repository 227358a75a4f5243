"""Every post-training stage runs end to end on a tiny model, writes its run artifacts, and resumes exactly
from a checkpoint (an interrupted run continued with resume=true equals the uninterrupted run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zerollm.posttrain import tasks
from zerollm.stages import posttrain as stages

TINY = dict(n_layer=1, d_model=32, n_head=2, max_seq_len=96)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pt")
    tok = tasks.byte_tokenizer()
    tasks.init_model_dir(d / "base", tok, **TINY)
    tasks.write_jsonl(d / "arith.jsonl", tasks.arithmetic_dataset(40, seed=1, digits=2))
    tasks.write_jsonl(d / "arith_eval.jsonl", tasks.arithmetic_prompts(tasks.arithmetic_dataset(4, seed=2, digits=2)))
    tasks.write_jsonl(d / "prefs.jsonl", tasks.sentiment_preferences(24))
    tasks.write_jsonl(d / "prompts.jsonl", [{"prompt": p["prompt"]} for p in tasks.sentiment_preferences(12)])
    # a reward model for PPO
    stages.reward(None, _cfg(d, "rm0", data=[str(d / "prefs.jsonl")], steps=2))
    return d


def _cfg(d: Path, out: str, steps: int = 4, lora: bool = False, **kw) -> dict:
    return {"model": str(d / "base"), "out": str(d / out), "max_len": 64, "val_fraction": 0.25, "lora": lora,
            "lora_config": {"r": 2, "alpha": 4}, **kw,
            "train": {"steps": steps, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "eval_every": 2, "ckpt_every": 2,
                      "log_every": 1, "progress": False, "eval_at_start": False}}


STAGES = {
    "sft": lambda d: dict(data=[str(d / "arith.jsonl")], eval_answers=[str(d / "arith_eval.jsonl")],
                          eval_max_new_tokens=8),
    "sft_packed": lambda d: dict(data=[str(d / "arith.jsonl")], packing=True),  # document-masked rows
    "reward": lambda d: dict(data=[str(d / "prefs.jsonl")]),
    "dpo": lambda d: dict(data=[str(d / "prefs.jsonl")]),
    "grpo": lambda d: dict(data=[str(d / "arith.jsonl")], max_new_tokens=8, group_size=3, prompts_per_step=2,
                           updates_per_rollout=2),
    "ppo": lambda d: dict(data=[str(d / "prompts.jsonl")], reward_model=str(d / "rm0"), max_new_tokens=8,
                          prompts_per_step=3, ppo_epochs=2, eval_limit=2),
}


def _losses(run: Path) -> dict:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.parametrize("stage,lora", [("sft", True), ("sft_packed", False), ("reward", False), ("dpo", True),
                                        ("grpo", False), ("ppo", False)])
def test_stage_runs_and_resumes_exactly(env, stage, lora, monkeypatch):
    from zerollm.train import loop

    fn = getattr(stages, stage.split("_")[0])
    straight = fn(None, _cfg(env, f"{stage}_a", lora=lora, **STAGES[stage](env)))
    run_a = Path(straight["run_dir"])
    for f in ("report.md", "metrics.jsonl", "loss.png", "config.yaml", "manifest.json"):
        assert (run_a / f).is_file(), f
    assert (run_a / f"{stage.split('_')[0]}.png").is_file()
    report = (run_a / "report.md").read_text()
    assert "nan" not in report.lower().replace("nanogpt", "")  # only metrics the stage has (eval_lines)
    assert {"sft": "validation loss", "reward": "held-out pairwise accuracy", "dpo": "held-out pairwise accuracy",
            "grpo": "final train loss", "ppo": "held-out reward-model score"}[stage.split("_")[0]] in report
    assert (run_a / "adapter" / "adapter_config.json").is_file() == lora
    assert (run_a / "model" / "model.safetensors").is_file()

    original = loop.lr_at

    def interrupt(step, **kw):  # die right after the step-2 checkpoint
        if step == 2:
            raise KeyboardInterrupt
        return original(step, **kw)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "lr_at", interrupt)
        fn(None, _cfg(env, f"{stage}_b", lora=lora, **STAGES[stage](env)))
    fn(None, {**_cfg(env, f"{stage}_b", lora=lora, **STAGES[stage](env)), "resume": True})
    a, b = _losses(run_a), _losses(env / f"{stage}_b")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert [a[s] for s in a] == [b[s] for s in a]
    wa = load_file(str(run_a / "checkpoints" / "step-00000004" / "model.safetensors"))
    wb = load_file(str(env / f"{stage}_b" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_stage_output_is_a_plain_model(env):
    from zerollm.loading import load

    loaded = load(env / "sft_a" / "model")  # merged: loads as a plain Transformer
    assert loaded.tokenizer is not None and not any("lora" in n for n, _ in loaded.model.named_parameters())


def test_cli_dispatch(env):
    from zerollm.cli import main

    rc = main(["sft", "--model", str(env / "base"), "--data", str(env / "arith.jsonl"), "--out", str(env / "cli"),
               "--lora", "train.steps=1", "train.progress=false", "train.eval_every=0", "lora_config.r=2"])
    assert rc == 0 and (env / "cli" / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["dpo", "--model", str(env / "base"), "--data", str(env / "nope.jsonl"), "--out", str(env / "x")]) == 2


def test_report_lists_only_logged_eval_metrics():
    from zerollm.train.report import eval_lines

    evals = [{"step": 0, "pair_accuracy": 0.5, "margin": 0.0}, {"step": 4, "pair_accuracy": 0.75, "margin": 0.2,
                                                              "val_loss": float("nan")}]
    assert eval_lines(evals) == ["- held-out pairwise accuracy: 50.0% (step 0) → **75.0%** (step 4)",
                                 "- held-out mean margin: 0.000 (step 0) → **0.200** (step 4)"]
    assert eval_lines([]) == [] and eval_lines([{"step": 2, "kl": 0.5}]) == ["- kl: **0.5** (step 2)"]
