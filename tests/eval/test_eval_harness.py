"""Proved against lm-evaluation-harness itself: lm-eval runs local tasks (YAML over JSONL written here; no hub)
through our registered `zerollm` model and through its own `hf` backend on the same tiny transformers model;
log-likelihoods agree to 1e-4 and accuracies exactly. `zerollm eval`'s PIQA and JCommonsenseQA give the
same per-item log-likelihoods as lm-eval's `hf` backend on the same items. Japanese tasks run on an imported
GPT-NeoX with a Japanese byte-level BPE."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
lm_eval = pytest.importorskip("lm_eval")

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import zerollm.eval.harness  # noqa: F401  (registers "zerollm")
from zerollm.eval.tasks import JA_DESCRIPTION

N_PIQA, N_JCQA = 8, 6
JCQA_TEXT = ("### 指示：\\n出力は以下から選択してください：\\n{% for choice in choices %}- {{ choice }}\\n{% endfor %}"
             "### 入力：\\n{{ question }}\\n\\n### 応答：")


def _task_yaml(name: str, data: str, body: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\n{body}")


@pytest.fixture(scope="module")
def tasks_dir(shared_data, tmp_path_factory):
    """lm-eval task YAMLs over local JSONL: PIQA and JCommonsenseQA as zerollm's built-ins define them, a
    rolling log-likelihood task and a generation task."""
    d = tmp_path_factory.mktemp("lm_eval_tasks")
    rows = [json.loads(x) for x in (shared_data / "piqa" / "valid.jsonl").read_text().splitlines()[:N_PIQA]]
    labels = (shared_data / "piqa" / "valid-labels.lst").read_text().split()[:N_PIQA]
    (d / "piqa.jsonl").write_text("".join(json.dumps({**r, "label": int(x)}) + "\n" for r, x in zip(rows, labels)))
    (d / "piqa_local.yaml").write_text(_task_yaml("piqa_local", d / "piqa.jsonl", (
        'output_type: multiple_choice\ndoc_to_text: "Question: {{goal}}\\nAnswer:"\ndoc_to_target: label\n'
        'doc_to_choice: "{{[sol1, sol2]}}"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n')))
    jrows = [json.loads(x) for x in
             (shared_data / "jglue_jcommonsenseqa" / "valid-v1.3.json").read_text().splitlines()[:N_JCQA]]
    (d / "jcqa.jsonl").write_text("".join(json.dumps({**r, "choices": [r[f"choice{i}"] for i in range(5)]},
                                                     ensure_ascii=False) + "\n" for r in jrows))
    (d / "jcqa_local.yaml").write_text(_task_yaml("jcqa_local", d / "jcqa.jsonl", (
        f'output_type: multiple_choice\ndescription: {json.dumps(JA_DESCRIPTION, ensure_ascii=False)}\n'
        f'doc_to_text: "{JCQA_TEXT}"\ndoc_to_target: label\ndoc_to_choice: choices\ntarget_delimiter: "\\n"\n'
        'metric_list:\n  - metric: acc\n  - metric: acc_norm\n')), encoding="utf-8")
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:3000].split("\n\n")[:5]
    (d / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
    (d / "text_local.yaml").write_text(_task_yaml("text_local", d / "text.jsonl", (
        'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        'metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n')))
    (d / "gen_local.yaml").write_text(_task_yaml("gen_local", d / "piqa.jsonl", (
        'output_type: generate_until\ndoc_to_text: "Question: {{goal}}\\nAnswer:"\ndoc_to_target: "{{sol1}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 8\n  do_sample: false\n'
        'metric_list:\n  - metric: exact_match\n')))
    return d


def gpt2_tokenizer_files(shared_data, d):
    import tokenizers as tk

    src = shared_data / "gpt2_bpe"
    tok = tk.Tokenizer(tk.models.BPE.from_file(str(src / "encoder.json"), str(src / "vocab.bpe")))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.post_processor = tk.processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([tk.AddedToken("<|endoftext|>", special=True)])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))


@pytest.fixture(scope="module")
def gpt2_dir(shared_data, tmp_path_factory):
    """A tiny random transformers GPT-2 (128 positions: long PIQA items get cut from the left) with GPT-2's
    real tokenizer, saved as a Hugging Face directory."""
    d = tmp_path_factory.mktemp("gpt2")
    gpt2_tokenizer_files(shared_data, d)
    cfg = transformers.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=50256, eos_token_id=50256)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(d)
    return d


def run_lm_eval(model: str, path, tasks_dir, tasks: list[str]) -> dict:
    from lm_eval.tasks import TaskManager

    args = f"pretrained={path},device=cpu" + (",dtype=float32" if model == "hf" else "")
    return lm_eval.simple_evaluate(model=model, model_args=args, tasks=tasks, batch_size=4, log_samples=True,
                                   task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False))


@pytest.fixture(scope="module")
def both(gpt2_dir, tasks_dir):
    tasks = ["piqa_local", "jcqa_local", "text_local", "gen_local"]
    return {m: run_lm_eval(m, gpt2_dir, tasks_dir, tasks) for m in ("hf", "zerollm")}


def lls(result: dict, task: str) -> np.ndarray:
    samples = sorted(result["samples"][task], key=lambda s: s["doc_id"])
    return np.array([[r[0][0] if isinstance(r[0], (list, tuple)) else r[0] for r in s["resps"]] for s in samples])


@pytest.mark.parametrize("task", ["piqa_local", "jcqa_local", "text_local"])
def test_adapter_matches_lm_eval_hf_backend(both, task):
    hf, ours = both["hf"], both["zerollm"]
    np.testing.assert_allclose(lls(ours, task), lls(hf, task), atol=1e-4, rtol=0)
    for metric in ("acc,none", "acc_norm,none", "bits_per_byte,none", "word_perplexity,none"):
        if metric in hf["results"][task]:
            assert ours["results"][task][metric] == pytest.approx(hf["results"][task][metric], rel=1e-5)


def test_adapter_generate_until_matches_hf_greedy(both):
    gen = [[s["resps"][0][0] for s in sorted(both[m]["samples"]["gen_local"], key=lambda s: s["doc_id"])]
           for m in ("hf", "zerollm")]
    assert gen[0] == gen[1] and len(gen[0]) == N_PIQA


def test_zerollm_eval_piqa_and_jcommonsenseqa_equal_lm_eval(both, gpt2_dir, shared_data, tmp_path):
    from zerollm.stages.eval import evaluate

    res = {r["task"]: r for r in evaluate(gpt2_dir, "piqa", tmp_path / "a", limit=N_PIQA, data_dir=shared_data,
                                           batch_size=3, show_progress=False)}
    res.update({r["task"]: r for r in evaluate(gpt2_dir, "jcommonsenseqa", tmp_path / "b", limit=N_JCQA,
                                                data_dir=shared_data, show_progress=False)})
    for ours, theirs in (("piqa", "piqa_local"), ("jcommonsenseqa", "jcqa_local")):
        np.testing.assert_allclose([r["lls"] for r in res[ours]["records"]], lls(both["hf"], theirs), atol=1e-4)
        for m in ("acc", "acc_norm"):
            assert res[ours]["metrics"][m]["value"] == pytest.approx(both["hf"]["results"][theirs][f"{m},none"])
            assert res[ours]["metrics"][m]["stderr"] == pytest.approx(
                both["hf"]["results"][theirs][f"{m}_stderr,none"])
    assert res["piqa"]["truncated"] == 0  # PIQA items fit in 128 positions (truncation: test_eval_scoring.py)


def test_lm_eval_cli_wrapper_finds_the_zerollm_model(gpt2_dir, tasks_dir, tmp_path, monkeypatch, capsys):
    from lm_eval.tasks.manager import TaskManager

    from zerollm.eval.harness import main

    # only the local task directory is indexed (lm-eval's thousands of built-in YAMLs take ~40 s to scan)
    monkeypatch.setattr(TaskManager.__init__, "__defaults__", (None, None, False, None))

    main(["run", "--model", "zerollm", "--model_args", f"pretrained={gpt2_dir}", "--tasks", "piqa_local",
          "--include_path", str(tasks_dir), "--limit", "2", "--output_path", str(tmp_path / "out")])
    assert "piqa_local" in capsys.readouterr().out
    assert list((tmp_path / "out").rglob("results_*.json"))


@pytest.fixture(scope="module")
def neox_ja_dir(shared_data, tmp_path_factory):
    """An imported tiny GPT-NeoX with a Japanese byte-level BPE (GPT-NeoX style; trained here on Aozora)."""
    import tokenizers as tk

    d = tmp_path_factory.mktemp("neox_ja")
    text = (shared_data / "aozora" / "127_ruby_150.txt").read_text(encoding="utf-8")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    cfg = transformers.GPTNeoXConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96,
                                     num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
                                     rotary_pct=0.25, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(d)
    return d


def test_japanese_tasks_on_an_imported_gpt_neox(neox_ja_dir, tasks_dir, shared_data, tmp_path):
    from zerollm.cli import main

    out = tmp_path / "ja"
    assert main(["eval", "--model", str(neox_ja_dir), "--tasks", "jcommonsenseqa,jsquad", "--limit", "3",
                 "--data-dir", str(shared_data), "--out", str(out)]) == 0
    jcqa = json.loads((out / "jcommonsenseqa.json").read_text())
    jsquad = json.loads((out / "jsquad.json").read_text())
    assert jcqa["n"] == 3 and len(jcqa["records"][0]["lls"]) == 5
    assert {"exact_match", "char_f1"} <= set(jsquad["metrics"]) and jsquad["records"][0]["targets"]
    hf = run_lm_eval("hf", neox_ja_dir, tasks_dir, ["jcqa_local"])  # same log-likelihoods as lm-eval's hf
    np.testing.assert_allclose([r["lls"] for r in jcqa["records"]], lls(hf, "jcqa_local")[:3], atol=1e-4)
