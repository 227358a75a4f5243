"""Thread count picked by measuring (issue 18 item 8): 1 thread vs all cores on the first training steps,
the faster kept and stored in the checkpoint so --resume keeps it; --threads N turns measuring off."""
from __future__ import annotations

import json

import pytest
import torch

from zerollm import runtime
from zerollm.runtime import ThreadPicker


def test_picker_keeps_the_faster_count():
    for slow_one, want in ((True, 4), (False, 1)):
        p = ThreadPicker(4, trials=3)
        seen = []
        for _ in range(8):
            n = p.candidate()
            seen.append(n)
            p.after_step({1: 2.0 if slow_one else 0.5, 4: 1.0}[n])
        assert seen[:6] == [1, 1, 1, 4, 4, 4] and p.choice == want and seen[6:] == [want, want]


def test_picker_rechecks_and_follows_a_machine_that_gets_busy():
    p = ThreadPicker(2, trials=3, recheck_every=10)
    cost = {1: 1.0, 2: 0.5}  # quiet machine: 2 threads faster
    seen = []
    for step in range(60):
        if step == 20:
            cost = {1: 1.0, 2: 4.0}  # another job takes a core: 2 threads stall
        n = p.candidate()
        seen.append(n)
        p.after_step(cost[n])
    assert seen[6:16] == [2] * 10  # chosen after the first measurement
    assert p.choice == 1 and seen[30:].count(2) <= 6  # a re-check switched; later re-checks probe 2 briefly
    # a re-check that loses keeps the current count
    q = ThreadPicker(2, trials=2, recheck_every=4, choice=1)
    for _ in range(30):
        n = q.candidate()
        q.after_step({1: 1.0, 2: 3.0}[n])
        assert q.choice == 1


def test_measuring_only_when_asked_on_cpu_and_a_resume_reuses_the_saved_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
        cpu = torch.device("cpu")
        runtime.set_threads(3)  # --threads 3: no measuring
        assert ThreadPicker.for_run(cpu) is None
        runtime.set_threads(None)  # no --threads
        assert isinstance(ThreadPicker.for_run(cpu), ThreadPicker)
        assert ThreadPicker.for_run(torch.device("meta")) is None
        set_to = []
        monkeypatch.setattr(torch, "set_num_threads", set_to.append)
        resumed = ThreadPicker.for_run(cpu, saved=1)  # a resumed run starts from its saved count
        assert set_to == [1] and resumed.choice == 1 and resumed.candidate() == 1 and resumed.n_max == 2
        runtime.set_threads(3)
        assert ThreadPicker.for_run(cpu, saved=1) is None and set_to[-1] == 1  # --threads: no measuring
        runtime.set_threads(None)
        runtime.end_auto_threads()
        assert ThreadPicker.for_run(cpu) is None
    finally:
        runtime._auto_threads[0] = False
        monkeypatch.undo()
        torch.set_num_threads(before)


@pytest.fixture
def shards(tmp_path):
    from zerollm.api import data_prepare, tokenizer_train

    text = "The quick brown fox jumps over the lazy dog. " * 200
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": text[i:i + 300]}) + "\n" for i in range(0, len(text), 300)))
    tokenizer_train([str(docs)], tmp_path / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], tmp_path / "tok", tmp_path / "shards", val_fraction=0.2, show_progress=False)
    return tmp_path / "shards"


def test_cli_training_without_threads_stores_the_pick(shards, tmp_path):
    from zerollm import cli
    from zerollm.train.checkpoint import load_trainer_state

    run = tmp_path / "run"
    rc = cli.main(["pretrain", "--data", str(shards), "--out", str(run), "--preset", "gpt-1m",
                   "model.n_layer=1", "model.d_model=32", "model.n_head=2", "train.steps=8", "train.batch_size=2",
                   "train.seq_len=16", "train.progress=false", "train.eval_every=0", "sample_tokens=0",
                   "train.ckpt_every=8"])
    assert rc == 0
    saved = load_trainer_state(run / "checkpoints" / "step-00000008")["threads"]
    n = torch.get_num_threads()
    assert saved in (1, n) if n > 1 else saved is None
    assert not runtime._auto_threads[0]  # measuring ended with the command
