"""eval/tasks.py, stages/eval.py and eval/report.py: built-in tasks read the real files, user tasks need no code,
bad task files fail naming file, line and field, `zerollm eval` / `zerollm report` from the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from zerollm.eval.tasks import get_task
from zerollm.train.checkpoint import save_checkpoint


def test_builtin_tasks_read_the_shared_data(shared_data):
    piqa = get_task("piqa", shared_data)
    assert len(piqa.items) == 1838 and piqa.items[0]["context"].startswith("Question: ")
    assert {it["label"] for it in piqa.items} == {0, 1}
    jcqa = get_task("jcommonsenseqa", shared_data)
    assert len(jcqa.items) == 1119 and len(jcqa.fewshot_pool) == 8939 and jcqa.delimiter == "\n"
    gsm = get_task("gsm8k", shared_data)
    assert len(gsm.items) == 1319 and gsm.items[0]["targets"] == ["18"] and "####" in gsm.fewshot_pool[0]["shot"]
    jsquad = get_task("jsquad", shared_data)
    assert len(jsquad.items) == 4442 and jsquad.metric == "squad"
    assert get_task("bpb_ja", shared_data).items and get_task("bpb", shared_data).kind == "bpb"


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("row, message", [
    ({"choices": ["a", "b"], "label": 0}, "missing field 'context'"),
    ({"context": "q", "choices": ["a", "b"], "label": 2}, "field 'label'=2 is out of range for 2 choices"),
    ({"context": "q", "choices": [], "label": 0}, "field 'choices': empty"),
    ({"context": "q", "choices": ["a", ""], "label": 0}, "non-empty string"),
    ("{not json", "not valid JSON"),
])
def test_bad_jsonl_task_names_file_line_and_field(tmp_path, row, message):
    path = write(tmp_path / "t.jsonl", [{"context": "ok", "choices": ["a", "b"], "label": 1}, row])
    with pytest.raises(ValueError, match=rf"t\.jsonl:2: .*{message}"):
        get_task(f"mc:{path}")


def test_user_task_file_needs_no_code(tmp_path, tiny_model, byte_tokenizer):
    from zerollm.eval import evaluate
    from zerollm.loading import Loaded

    write(tmp_path / "qa.jsonl", [{"q": "2+2", "opts": ["4", "5"], "gold": 0, "ans": "4"},
                                  {"q": "3+3", "opts": ["6", "7"], "gold": 0, "ans": "6"}])
    (tmp_path / "mc.yaml").write_text('data: qa.jsonl\nkind: multiple_choice\nprompt: "Q: {q}\\nA:"\n'
                                      'choices: opts\nlabel: gold\n')
    (tmp_path / "gen.json").write_text(json.dumps({"name": "arith", "data": "qa.jsonl", "kind": "generate",
                                                   "prompt": "{q}=", "target": "ans", "max_new_tokens": 4}))
    mc = get_task(str(tmp_path / "mc.yaml"))
    assert mc.name == "mc" and mc.items[1] == {"context": "Q: 3+3\nA:", "choices": ["6", "7"], "label": 0,
                                               "line": 2}
    loaded = Loaded(tiny_model(seed=0), byte_tokenizer, tmp_path)
    res = evaluate(loaded, f"{tmp_path / 'mc.yaml'},{tmp_path / 'gen.json'}", tmp_path / "out",
                   show_progress=False)
    assert [r["task"] for r in res] == ["mc", "arith"] and res[1]["metrics"]["exact_match"]["value"] in (0, .5, 1)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| mc | acc |" in table and "| arith | exact_match |" in table


@pytest.mark.parametrize("spec, message", [
    ("kind: multiple_choice\nprompt: x\nchoices: [a]\n", "missing field 'data'"),
    ("data: qa.jsonl\nkind: multiple_choice\nprompt: '{nope}'\nchoices: opts\n", r"qa\.jsonl:1: missing field 'nope'"),
    ("data: qa.jsonl\nkind: ranking\n", "field 'kind'='ranking'"),
    ("data: qa.jsonl\nkind: generate\nprompt: '{q}'\ntarget: ans\nmetric: bleu\n", "field 'metric'='bleu'"),
    ("data: qa.jsonl\nkind: multiple_choice\nprompt: '{q}'\nchoices: opts\nlabel: gold\nlabl: 1\n",
     "unknown field.*labl"),
])
def test_bad_task_file(tmp_path, spec, message):
    write(tmp_path / "qa.jsonl", [{"q": "2+2", "opts": ["4", "5"], "gold": 0, "ans": "4"}])
    (tmp_path / "task.yaml").write_text(spec)
    with pytest.raises(ValueError, match=message):
        get_task(str(tmp_path / "task.yaml"))


@pytest.fixture
def checkpoint(tmp_path, tiny_model, tiny_bpe_tokenizer):
    m = tiny_model(seed=0, vocab_size=tiny_bpe_tokenizer.vocab_size, max_seq_len=128, position="rope",
                   norm="rmsnorm", mlp="swiglu", bias=False)  # Llama-style: PEFT adapters map onto it
    return save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tiny_bpe_tokenizer)


def test_cli_eval_and_report(checkpoint, tmp_path, capsys):
    from zerollm.cli import main

    mc = write(tmp_path / "mc.jsonl", [{"context": "the cat", "choices": [" sat", " flew"], "label": 0}] * 3)
    text = tmp_path / "t.txt"
    text.write_text("hello world, how are you?\n\nthe cat sat on the mat.\n")
    assert main(["eval", "--model", str(checkpoint), "--tasks", f"mc:{mc},bpb:{text}", "--out",
                 str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "| mc | acc | 1.0000 |" in out or "| mc | acc | 0.0000 |" in out
    assert "bits_per_byte" in out
    # a run directory with its own eval.json + metrics, and the eval directory: one card, nothing re-run
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"kind": "run", "stage": "sft"}))
    (run / "metrics.jsonl").write_text('{"step": 1, "tokens": 4096, "elapsed_s": 12.5}\n{"step": 1, "val_loss": 2}\n')
    (run / "eval.json").write_text(json.dumps({"piqa": {"metrics": {"acc": {"value": 0.61, "stderr": 0.01}}}}))
    assert main(["report", str(tmp_path / "ev"), str(run), "--out", str(tmp_path / "card.md")]) == 0
    card = (tmp_path / "card.md").read_text()
    assert "| tokens seen | – | 4,096 |" in card and "| piqa acc | – | 0.6100 |" in card
    assert "| wall time (s) | – | 12.5 |" in card and (tmp_path / "card.png").stat().st_size > 1000
    assert "bpb:t.txt bits_per_byte" in card and "| tokenizer vocab |" in card


def test_cli_errors_are_one_line_exit_2(checkpoint, tmp_path, capsys):
    from zerollm.cli import main

    bad = write(tmp_path / "bad.jsonl", [{"context": "q", "choices": ["a"], "label": 3}])
    assert main(["eval", "--model", str(checkpoint), "--tasks", f"mc:{bad}", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1: field 'label'=3 is out of range" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--model", str(checkpoint), "--tasks", "nope", "--out", str(tmp_path / "e")]) == 2
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "c.md")]) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not ours")
    assert main(["eval", "--model", str(checkpoint), "--tasks", f"mc:{bad}", "--out", str(tmp_path / "other")]) == 2
    assert (tmp_path / "other" / "x.txt").read_text() == "not ours"


def test_training_stage_writes_its_eval_json(checkpoint, tmp_path):
    from zerollm.eval import evaluate_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint.rename(run / "checkpoints" / "step-00000010")
    mc = write(tmp_path / "mc.jsonl", [{"context": "the cat", "choices": [" sat", " flew"], "label": 0}])
    table = evaluate_run(run, f"mc:{mc}")
    saved = json.loads((run / "eval.json").read_text())
    assert "| mc | acc |" in table and saved["mc"]["n"] == 1 and "records" not in saved["mc"]


def test_quantized_and_lora_adapted_models_evaluate(checkpoint, tmp_path):
    """A quantized checkpoint scores close to its float model; a LoRA adapter (B = 0 at init, so the merged
    model equals the base) applied with --adapter gives the base model's scores."""
    import torch

    from zerollm.loading import load
    from zerollm.posttrain.lora import LoRAConfig, apply_lora, save_adapter
    from zerollm.stages.eval import evaluate
    from zerollm.stages.quantize import quantize

    mc = write(tmp_path / "mc.jsonl", [{"context": "the cat", "choices": [" sat on the mat", " flew"], "label": 0},
                                       {"context": "hello", "choices": [" world", " you"], "label": 1}])

    def lls(model_dir, out, **kw):
        res = evaluate(model_dir, f"mc:{mc}", tmp_path / out, show_progress=False, **kw)[0]
        return np.array([r["lls"] for r in res["records"]])

    base = lls(checkpoint, "f32")
    quantize(checkpoint, tmp_path / "q8", scheme="int8")
    np.testing.assert_allclose(lls(tmp_path / "q8", "q8e"), base, rtol=0.05)
    model = load(checkpoint).model
    apply_lora(model, LoRAConfig(r=4, alpha=8))
    save_adapter(model, tmp_path / "adapter")
    np.testing.assert_allclose(lls(checkpoint, "lora", adapter=str(tmp_path / "adapter")), base, atol=1e-5)
    with torch.no_grad():  # a non-zero adapter changes the scores
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    save_adapter(model, tmp_path / "adapter2")
    assert np.abs(lls(checkpoint, "lora2", adapter=str(tmp_path / "adapter2")) - base).max() > 1e-3
