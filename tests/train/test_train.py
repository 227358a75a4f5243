"""The one training loop: exact resume, DDP equivalence, schedules, configs, run artifacts."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zerollm.config import ModelConfig, load_config, parse_overrides
from zerollm.stages.pretrain import PretrainConfig
from zerollm.train.loop import TrainConfig
from zerollm.train.schedule import lr_at

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. ") * 40 + "Call me Ishmael. Some years ago, never mind how long precisely. " * 40


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A tiny corpus → BPE tokenizer → shards, through the public API."""
    from zerollm.api import data_prepare, tokenizer_train

    root = tmp_path_factory.mktemp("pipeline")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": TEXT[i:i + 400]}) + "\n" for i in range(0, len(TEXT), 400)))
    tokenizer_train([str(docs)], root / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], root / "tok", root / "shards", val_fraction=0.2, show_progress=False)
    return root / "shards"


def _tiny(shards: Path, out: Path, steps: int, **train_kw) -> PretrainConfig:
    tc = TrainConfig(steps=steps, batch_size=train_kw.pop("batch_size", 4), seq_len=32, lr=3e-3, warmup_steps=2,
                     eval_every=train_kw.pop("eval_every", 4), eval_batches=2, ckpt_every=train_kw.pop("ckpt_every", 4),
                     log_every=1, progress=False, device="cpu", **train_kw)
    return PretrainConfig(data=str(shards), out=str(out), preset="gpt-1m",
                          model={"n_layer": 2, "d_model": 32, "n_head": 2, "dropout": 0.0}, train=tc,
                          sample_tokens=0)


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_resume_is_bit_exact(shards, tmp_path, monkeypatch):
    from zerollm.stages.pretrain import pretrain

    straight = tmp_path / "straight"
    pretrain(_tiny(shards, straight, 8), quiet=True)
    halves = tmp_path / "halves"
    cfg_half = _tiny(shards, halves, 8)
    from zerollm.train import loop

    # An interrupted run: it dies right after the step-4 checkpoint is written (the schedule spans 8 steps).
    original = loop.lr_at

    def interrupt(step, **kw):
        if step == 4:
            raise KeyboardInterrupt
        return original(step, **kw)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "lr_at", interrupt)
        pretrain(cfg_half, quiet=True)
    assert (halves / "checkpoints" / "step-00000004" / "trainer_state.pt").is_file()
    cfg = _tiny(shards, halves, 8)
    cfg.resume = True
    pretrain(cfg, quiet=True)
    a, b = _losses(straight), _losses(halves)
    assert sorted(a) == list(range(1, 9)) and sorted(b) == list(range(1, 9))
    assert [a[s] for s in range(1, 9)] == [b[s] for s in range(1, 9)]  # bit for bit (as logged, 5 decimals)
    from safetensors.torch import load_file

    wa = load_file(str(straight / "checkpoints" / "step-00000008" / "model.safetensors"))
    wb = load_file(str(halves / "checkpoints" / "step-00000008" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_run_dir_has_everything(shards, tmp_path):
    from zerollm.stages.pretrain import pretrain

    run = tmp_path / "run"
    summary = pretrain(_tiny(shards, run, 6), quiet=True)
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "report.md", "manifest.json"):
        assert (run / name).is_file(), name
    ck = Path(summary["checkpoint"])
    for name in ("model.safetensors", "config.json", "trainer_state.pt", "manifest.json", "tokenizer"):
        assert (ck / name).exists(), name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run / "report.md").read_text()
    assert "validation loss" in report and "tokens/s" in report
    evals = summary["evals"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 6 and "val_bpb" in evals[-1]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]  # it learned something in 6 steps at lr 3e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one(shards, tmp_path):
    """torchrun with 2 ranks x batch 4 gives the losses of 1 process x batch 8 (within float tolerance)."""
    from zerollm.stages.pretrain import pretrain

    single = tmp_path / "single"
    pretrain(_tiny(shards, single, 6, batch_size=8, eval_every=0, ckpt_every=0), quiet=True)
    ddp = tmp_path / "ddp"
    overrides = [f"data={shards}", f"out={ddp}", "preset=gpt-1m", "model.n_layer=2", "model.d_model=32",
                 "model.n_head=2", "train.steps=6", "train.batch_size=4", "train.seq_len=32", "train.lr=3e-3",
                 "train.warmup_steps=2", "train.eval_every=0", "train.ckpt_every=0", "train.log_every=1",
                 "train.progress=false", "train.device=cpu", "sample_tokens=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "zerollm.cli", "pretrain", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _losses(single), _losses(ddp)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for s in a:
        assert math.isclose(a[s], b[s], rel_tol=0, abs_tol=2e-4), (s, a[s], b[s])


def test_schedules():
    kw = dict(peak=1.0, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(9, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(99, schedule="cosine", **kw) == pytest.approx(0.1, abs=1e-3)
    assert lr_at(55, schedule="cosine", **kw) == pytest.approx(0.55, abs=1e-6)  # midpoint of the cosine
    assert lr_at(50, schedule="wsd", decay_fraction=0.2, **kw) == 1.0  # stable phase
    assert lr_at(90, schedule="wsd", decay_fraction=0.2, **kw) == pytest.approx(0.55)
    assert lr_at(100, schedule="wsd", decay_fraction=0.2, **kw) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_at(20, schedule="linear-ish", **kw)


def test_config_yaml_and_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: llama-1m\ntrain:\n  lr: 0.002\n  steps: 50\nmodel:\n  n_layer: 3\n")
    cfg = load_config(PretrainConfig, y, ["train.lr=5e-4", "--train.compile=true", "model.d_model=64"])
    assert cfg.preset == "llama-1m" and cfg.train.lr == 5e-4 and cfg.train.steps == 50 and cfg.train.compile is True
    assert cfg.model == {"n_layer": 3, "d_model": 64}
    with pytest.raises(ValueError, match="train.lrr"):
        load_config(PretrainConfig, None, ["train.lrr=1"])
    with pytest.raises(ValueError, match="train.steps"):
        load_config(PretrainConfig, None, ["train.steps=lots"])
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_model_config_validation():
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(norm="batchnorm")
    assert ModelConfig(mlp="swiglu", d_model=128).d_ff == 384


def test_a_fresh_run_never_lands_in_an_existing_run(shards, tmp_path, capsys):
    """Issue 18.3: a second, fresh pretrain into a run folder used to be silently mixed with the first (and
    pruning deleted the new run's lower-numbered checkpoints). It is refused; --overwrite moves the old run aside."""
    from zerollm import cli
    from zerollm.loading import resolve_checkpoint
    from zerollm.stages.pretrain import pretrain

    run = tmp_path / "run"
    pretrain(_tiny(shards, run, 8, keep_last=1), quiet=True)
    first = (run / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        pretrain(_tiny(shards, run, 4, keep_last=1), quiet=True)
    assert (run / "metrics.jsonl").read_text() == first  # untouched
    rc = cli.main(["pretrain", "--data", str(shards), "--out", str(run), "--preset", "gpt-1m", "train.steps=2",
                   "train.progress=false"])
    assert rc == 2 and "--resume" in capsys.readouterr().err
    cfg = _tiny(shards, run, 4, keep_last=1)
    cfg.overwrite = True
    pretrain(cfg, quiet=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == first  # nothing lost
    assert resolve_checkpoint(run).name == "step-00000004"  # the new run's own checkpoint, kept by pruning
    assert max(_losses(run)) == 4
