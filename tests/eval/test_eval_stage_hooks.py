"""Issue 15: a stage evaluates its own result through the one hook (eval.evaluate_run): `zerollm quantize
--eval-tasks` writes OUT/eval.json equal to `zerollm eval` on the same quantized directory, and `zerollm
report` reads that directory as a "quantize" column (its scheme, wall time, vocabulary, metrics)."""
from __future__ import annotations

import json

import pytest

from zerollm.cli import main
from zerollm.train.checkpoint import save_checkpoint

TEXT = "hello world, how are you?\n\nthe cat sat on the mat.\n\nit is a truth universally acknowledged.\n"


@pytest.fixture
def checkpoint(tmp_path, tiny_model, tiny_bpe_tokenizer):
    m = tiny_model(seed=0, vocab_size=tiny_bpe_tokenizer.vocab_size, max_seq_len=128)
    return save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tiny_bpe_tokenizer)


def test_quantize_eval_tasks_equals_zerollm_eval(checkpoint, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    q = tmp_path / "q8"
    assert main(["quantize", "--model", str(checkpoint), "--scheme", "int8", "--out", str(q),
                 "--eval-tasks", f"bpb:{text}", "--eval-limit", "2"]) == 0
    hook = json.loads((q / "eval.json").read_text())["bpb:t.txt"]
    assert hook["n"] == 2 and "records" not in hook
    # the same quantized directory evaluated on its own: the same bits per byte
    assert main(["eval", "--model", str(q), "--tasks", f"bpb:{text}", "--limit", "2", "--out", str(tmp_path / "ev")]) == 0
    alone = json.loads((tmp_path / "ev" / "results.json").read_text())["bpb:t.txt"]
    assert hook["metrics"]["bits_per_byte"]["value"] == pytest.approx(alone["metrics"]["bits_per_byte"]["value"],
                                                                      rel=1e-6)
    assert hook["metrics"]["bits_per_byte"]["value"] > 0
    # the card: the quantized directory is a stage column with its scheme and wall time
    assert main(["report", str(q), "--out", str(tmp_path / "card.md")]) == 0
    card = (tmp_path / "card.md").read_text()
    wall = json.loads((q / "manifest.json").read_text())["elapsed_s"]
    assert "| q8 (quantize int8) |" in card and f"| wall time (s) | {wall:,.1f} |" in card
    value = hook["metrics"]["bits_per_byte"]["value"]
    assert f"| bpb:t.txt bits_per_byte | {value:.4f} |" in card


def test_quantize_bad_eval_task_fails_before_writing(checkpoint, tmp_path, capsys):
    assert main(["quantize", "--model", str(checkpoint), "--scheme", "int8", "--out", str(tmp_path / "q"),
                 "--eval-tasks", "no_such_task"]) == 2
    assert "no_such_task" in capsys.readouterr().err and not (tmp_path / "q").exists()
