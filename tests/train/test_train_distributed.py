"""Distributed training on CPU (gloo, 2 processes under torchrun): FSDP2 and DDP compute what one process
computes on the same global batch; a sharded (DCP) checkpoint saved by 2 ranks resumes in 1 process and
consolidates into a checkpoint the engine loads; two "nodes" meet through c10d rendezvous on loopback; a
rank that dies or hangs ends the job with a clear error within the collective timeout."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from zerollm.posttrain import tasks
from zerollm.stages.pretrain import PretrainConfig, pretrain

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. ") * 40 + "Call me Ishmael. Some years ago, never mind how long precisely. " * 40
SRC = str(Path(__file__).resolve().parents[2] / "src")
TOL = 1e-5 + 1e-9  # metrics.jsonl rounds losses to 5 decimals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _torchrun(stage: str, args: list[str], nproc: int = 2, timeout: int = 300) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "zerollm.cli", stage, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _assert_same(a: dict, b: dict, steps) -> None:
    assert sorted(a) == sorted(b) == list(steps), (a, b)
    for s in a:
        assert math.isclose(a[s], b[s], rel_tol=0, abs_tol=TOL), (s, a[s], b[s])


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from zerollm.api import data_prepare, tokenizer_train

    root = tmp_path_factory.mktemp("dist")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": TEXT[i:i + 400]}) + "\n" for i in range(0, len(TEXT), 400)))
    tokenizer_train([str(docs)], root / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], root / "tok", root / "shards", val_fraction=0.2, show_progress=False)
    return root / "shards"


PRETRAIN = ["preset=gpt-1m", "model.n_layer=2", "model.d_model=32", "model.n_head=2", "model.dropout=0.0",
            "train.steps=5", "train.seq_len=32", "train.lr=3e-3", "train.warmup_steps=2", "train.eval_every=0",
            "train.ckpt_every=3", "train.log_every=1", "train.progress=false", "train.device=cpu", "sample_tokens=0"]


@pytest.mark.slow
def test_fsdp_matches_one_process_resumes_at_world_size_1_and_consolidates(shards, tmp_path):
    """FSDP2 over 2 ranks × batch 4 = 1 process × batch 8 for 5 steps; its step-3 sharded checkpoint resumes
    in one process (DCP resharding) to the same steps 4-5; the final one consolidates to the same model."""
    from zerollm import cli
    from zerollm.engine.engine import Engine
    from zerollm.engine.generate import GenerationConfig
    from zerollm.loading import load

    single = tmp_path / "single"
    from zerollm.config import load_config

    pretrain(load_config(PretrainConfig, None, [f"data={shards}", f"out={single}", "train.batch_size=8", *PRETRAIN]),
             quiet=True)
    fsdp = tmp_path / "fsdp"
    _torchrun("pretrain", [f"data={shards}", f"out={fsdp}", "train.batch_size=4", "train.parallel=fsdp", *PRETRAIN])
    _assert_same(_losses(single), _losses(fsdp), range(1, 6))
    ckpt = fsdp / "checkpoints" / "step-00000003"
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["sharded"] is True and manifest["world_size"] == 2
    assert (ckpt / "dcp").is_dir() and not (ckpt / "model.safetensors").exists()

    # an interrupted FSDP run (its last checkpoint is step 3) continued by one process, batch 8
    resumed = tmp_path / "resumed"
    shutil.copytree(fsdp, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000005")
    (resumed / "checkpoints" / "latest").write_text("step-00000003\n")
    pretrain(load_config(PretrainConfig, None, [f"data={shards}", f"out={resumed}", "resume=true",
                                                "train.batch_size=8", *PRETRAIN]), quiet=True)
    _assert_same(_losses(fsdp), _losses(resumed), range(1, 6))
    assert (resumed / "checkpoints" / "step-00000005" / "model.safetensors").is_file()  # back to single-file

    # consolidate → a plain checkpoint: same logits and the same greedy tokens as the one-process run
    with pytest.raises(ValueError, match="checkpoint consolidate"):
        load(fsdp)
    out = tmp_path / "consolidated"
    assert cli.main(["checkpoint", "consolidate", str(fsdp), "--out", str(out)]) in (0, None)
    a, b = load(out), load(single)
    x = torch.randint(0, a.tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a.model(x), b.model(x), atol=1e-4, rtol=0)
    gen = GenerationConfig(max_new_tokens=8, temperature=0.0)
    prompt = a.tokenizer.encode("It is a truth")
    ta = Engine(a.model, a.tokenizer).generate([prompt], gen)[0][0].token_ids
    tb = Engine(b.model, b.tokenizer).generate([prompt], gen)[0][0].token_ids
    assert list(ta) == list(tb)
    # and Hugging Face reads it: export → transformers gives the one-process model's logits
    import transformers

    from zerollm.api import export

    export(str(out), str(tmp_path / "hf"), format="hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, b.model(x), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def post(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("post")
    tok = tasks.byte_tokenizer()
    tasks.init_model_dir(d / "base", tok, n_layer=2, d_model=32, n_head=2, max_seq_len=96)
    tasks.write_jsonl(d / "arith.jsonl", tasks.arithmetic_dataset(40, seed=1, digits=2))
    tasks.write_jsonl(d / "prefs.jsonl", tasks.sentiment_preferences(24))
    return d


def _post_args(d: Path, data: str, out: Path, batch: int, accum: int = 1) -> list[str]:
    return ["--model", str(d / "base"), "--data", str(d / data), "--out", str(out), "--max-len", "64",
            "--val-fraction", "0.25", "train.steps=4", f"train.batch_size={batch}", f"train.grad_accum={accum}",
            "train.lr=1e-3", "train.warmup_steps=1", "train.eval_every=0", "train.ckpt_every=0",
            "train.log_every=1", "train.progress=false", "train.device=cpu"]


@pytest.mark.slow
def test_ddp_dpo_matches_one_process(post, tmp_path):
    """DPO: 2 ranks × 2 pairs = 1 process × 4 pairs (the loss is a mean over equally many pairs per rank)."""
    from zerollm import cli

    assert cli.main(["dpo", *_post_args(post, "prefs.jsonl", tmp_path / "one", 4)]) in (0, None)
    _torchrun("dpo", [*_post_args(post, "prefs.jsonl", tmp_path / "ddp", 2), "train.parallel=ddp"])
    _assert_same(_losses(tmp_path / "one"), _losses(tmp_path / "ddp"), range(1, 5))
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_ddp_sft_on_two_nodes_matches_one_process(post, tmp_path):
    """Two torchrun "nodes" (one process each) meet by c10d rendezvous on loopback and run SFT; per-rank
    losses are means over each rank's labelled tokens, so 2 ranks × batch 2 = 1 process × batch 2 with 2
    accumulation steps (the loop averages micro-batch means the same way)."""
    from zerollm import cli

    assert cli.main(["sft", *_post_args(post, "arith.jsonl", tmp_path / "one", 2, accum=2)]) in (0, None)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=zerollm-test",
                               "-m", "zerollm.cli", "sft",
                               *_post_args(post, "arith.jsonl", tmp_path / "nodes", 2), "train.parallel=ddp"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    _assert_same(_losses(tmp_path / "one"), _losses(tmp_path / "nodes"), range(1, 5))


FAILING_RANK = textwrap.dedent("""
    import os, sys, time
    import torch
    from zerollm.train.distributed import all_reduce_mean, barrier, failure_guard, init_distributed
    info = init_distributed("cpu", timeout_s=float(sys.argv[1]))
    with failure_guard(info, float(sys.argv[1])):
        barrier(info)
        if info.rank == 1:
            if sys.argv[2] == "exit":
                os._exit(3)          # a crash: the process is gone
            time.sleep(120)          # a hang: alive, but never joins the next collective
        for _ in range(100):
            all_reduce_mean(torch.ones(4), info)
            time.sleep(0.05)
    print("rank 0 finished?!")
""")


@pytest.mark.slow
def test_a_dead_or_hung_rank_ends_the_job_with_a_clear_error(tmp_path):
    """Both failures at once (two 2-rank jobs side by side): rank 1 exits, or rank 1 hangs; rank 0 must stop
    with a non-zero status and a one-line reason within the collective timeout, never wait forever."""
    script = tmp_path / "fail.py"
    script.write_text(FAILING_RANK)
    timeout = 6
    jobs = {}
    t0 = time.perf_counter()
    for mode in ("exit", "hang"):
        port = _free_port()
        jobs[mode] = [subprocess.Popen([sys.executable, str(script), str(timeout), mode],
                                       env={**_env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        for mode, (rank0, _) in jobs.items():
            _, err = rank0.communicate(timeout=timeout + 60)
            assert rank0.returncode not in (0, None), (mode, err)
            assert "rank 0/2: another rank failed or stopped responding" in err, err[-2000:]
        assert time.perf_counter() - t0 < timeout + 45  # process start-up (imports) + the timeout, not a hang
    finally:
        for procs in jobs.values():
            for p in procs:
                p.kill()
                p.wait()
