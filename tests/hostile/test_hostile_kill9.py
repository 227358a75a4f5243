"""kill -9 at chosen points of pretrain, SFT, `rag index` and `quantize` (issue 18 items 5 and 6): the next
start of the same stage removes the temporary folder the kill left, and the result equals the run that was
never interrupted. More points (and timed kills) run in bench/bench_kill9.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

KILLER = Path(__file__).with_name("killer.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")
TRAIN = ["--preset", "gpt-1m", "model.n_layer=1", "model.d_model=32", "model.n_head=2", "train.steps=6",
         "train.batch_size=2", "train.seq_len=16", "train.progress=false", "train.eval_every=0", "sample_tokens=0",
         "train.ckpt_every=2", "train.log_every=1", "train.warmup_steps=1", "train.keep_last=5"]


def zerollm(argv, kill_kind="none", kill_at=0, seconds=0.0) -> int:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(KILLER), kill_kind, str(kill_at), str(seconds), "--threads", "1", *map(str, argv)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300).returncode


def stray(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]


def weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


pytestmark = pytest.mark.slow  # each case runs the CLI 3 times in subprocesses (~10-30 s on the shared CPU)


@pytest.mark.parametrize("kill_at", [2])  # the save at step 4; bench/bench_kill9.py tries every save and timed kills
def test_pretrain_killed_mid_checkpoint_resumes_exactly(hostile_data, tmp_path, kill_at):
    shards = hostile_data / "shards"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert zerollm(["pretrain", "--data", shards, "--out", straight, *TRAIN]) == 0
    assert zerollm(["pretrain", "--data", shards, "--out", killed, *TRAIN], "checkpoint", kill_at) == -9
    assert stray(killed / "checkpoints")  # the kill left a full temporary checkpoint behind
    assert zerollm(["pretrain", "--data", shards, "--out", killed, "--resume", *TRAIN]) == 0
    assert not stray(killed)
    final = "checkpoints/step-00000006"
    assert same_weights(straight / final, killed / final)


def test_sft_killed_mid_checkpoint_resumes_exactly(hostile_ckpt, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} ok"}]}
            for i in range(12)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--model", hostile_ckpt, "--data", data, "train.steps=4", "train.batch_size=2", "train.seq_len=32",
            "train.progress=false", "train.eval_every=0", "train.ckpt_every=2", "train.log_every=1",
            "train.warmup_steps=1", "train.keep_last=5"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert zerollm(["sft", "--out", straight, *args]) == 0
    assert zerollm(["sft", "--out", killed, *args], "checkpoint", 2) == -9
    assert stray(killed)
    assert zerollm(["sft", "--out", killed, "--resume", *args]) == 0
    assert not stray(killed)
    assert same_weights(straight / "checkpoints/step-00000004", killed / "checkpoints/step-00000004")


def test_rag_index_killed_mid_save_is_cleaned_and_rebuilt(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"d{i}.md").write_text(f"# Doc {i}\n\n" + f"Paragraph {i} about cats and dogs. " * 30)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert zerollm(["rag", "index", docs, "--out", straight]) == 0
    assert zerollm(["rag", "index", docs, "--out", killed], "rag_index", 1) == -9
    assert stray(tmp_path) and not killed.exists()  # nothing published, the temporary index left behind
    assert zerollm(["rag", "index", docs, "--out", killed]) == 0
    assert not stray(tmp_path)
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (straight, killed))
    assert m1["n_chunks"] == m2["n_chunks"] > 0


def test_quantize_killed_mid_save_is_cleaned_and_redone(hostile_ckpt, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert zerollm(["quantize", "--model", hostile_ckpt, "--out", straight, "--bits", "8"]) == 0
    assert zerollm(["quantize", "--model", hostile_ckpt, "--out", killed, "--bits", "8"], "checkpoint", 1) == -9
    assert stray(tmp_path) and not killed.exists()
    assert zerollm(["quantize", "--model", hostile_ckpt, "--out", killed, "--bits", "8"]) == 0
    assert not stray(tmp_path)
    assert same_weights(straight, killed)
