"""eval/lm.py + runner.py: batched log-likelihoods equal one plain forward per request, rolling windows,
left truncation, generation through the Engine, resumable runs, metrics as lm-eval computes them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from zerollm.eval import metrics
from zerollm.eval.lm import Scorer, bits_per_byte
from zerollm.eval.runner import run_task
from zerollm.eval.tasks import Task


@torch.no_grad()
def plain_loglik(model, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    """The textbook definition, one request at a time: Σ log softmax(logits)[next token] over cont."""
    ids = torch.tensor([ctx + cont])
    logp = torch.log_softmax(model(ids[:, :-1]).float(), -1)[0]
    pos = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    lps = [float(logp[p, t]) for p, t in zip(pos, cont)]
    return math.fsum(lps), all(int(logp[p].argmax()) == t for p, t in zip(pos, cont))


def test_batched_loglikelihood_equals_one_request_at_a_time(tiny_model, byte_tokenizer):
    model = tiny_model(seed=1)
    reqs = [("Question: is the sky blue?\nAnswer:", " yes"), ("Q:", " a much longer continuation here"),
            ("", "empty context"), ("trailing space ", "moves"), ("日本語の", "質問")]
    got = Scorer(model, byte_tokenizer, batch_size=3).loglikelihood(reqs)
    for (c, x), (ll, greedy) in zip(reqs, got):
        s = Scorer(model, byte_tokenizer)
        ctx, cont = s.encode_pair(c, x)
        want_ll, want_greedy = plain_loglik(model, ctx, cont)
        assert ll == pytest.approx(want_ll, abs=1e-4) and greedy == want_greedy
    s = Scorer(model, byte_tokenizer)
    assert s.encode_pair("", "ab") == ([256], [97, 98])  # empty context: the eos prefix token
    assert s.encode_pair("a ", "b") == ([97], [32, 98])  # the trailing space goes to the continuation


@pytest.mark.parametrize("rope", [True, False])
def test_choices_sharing_a_context_are_scored_as_if_alone(tiny_model, byte_tokenizer, rope):
    """The context is computed once per packed row (masked so no choice sees another, positions restarted);
    every score equals the plain one-request forward, for RoPE and learned positions, with pads in the
    batch and a row split when the choices do not fit in one."""
    model = tiny_model(seed=6, **({"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"} if rope else {}))
    ctx = "Question: which one?\nAnswer:"
    choices = [" a", " the longer second choice", "x", " third", " " + "y" * 25, " " + "z" * 20, " " + "w" * 30]
    reqs = [(ctx, c) for c in choices] + [("other:", " alone"), ("Q2:", " p"), ("Q2:", " qq")]
    s = Scorer(model, byte_tokenizer, batch_size=2)
    got = s.loglikelihood(reqs)
    for (c, x), (ll, greedy) in zip(reqs, got):
        want_ll, want_greedy = plain_loglik(model, *s.encode_pair(c, x))
        assert ll == pytest.approx(want_ll, abs=1e-4) and greedy == want_greedy


def test_long_requests_are_cut_from_the_left_and_counted(tiny_model, byte_tokenizer):
    model = tiny_model(seed=2)  # 64 positions
    s = Scorer(model, byte_tokenizer)
    ctx, cont = list(b"x" * 100), list(b"yz")
    (ll, _), = s.loglikelihood_tokens([(ctx, cont)])
    assert s.truncated == 1
    keep = (ctx + cont)[-65:]
    assert ll == pytest.approx(plain_loglik(model, keep[:-2], keep[-2:])[0], abs=1e-4)


def test_rolling_loglikelihood_scores_every_token_once(tiny_model, byte_tokenizer):
    model = tiny_model(seed=3)
    s = Scorer(model, byte_tokenizer)
    short = "a short text"
    assert s.loglikelihood_rolling([short])[0] == pytest.approx(
        plain_loglik(model, [256], list(short.encode()))[0], abs=1e-4)
    long_ids = list(b"0123456789" * 15)  # 150 tokens > 64: three windows, each with the most context that fits
    windows = s.rolling_windows(long_ids)
    assert [len(c) for _, c in windows] == [64, 64, 22]
    assert [t for _, c in windows for t in c] == long_ids
    assert all(len(ctx) + len(c) <= 65 for ctx, c in windows) and windows[2][0][-1] == long_ids[127]
    assert s.truncated == 0 and bits_per_byte(-math.log(2) * 8, 8) == pytest.approx(1.0)


def test_metrics_match_lm_eval_definitions():
    from lm_eval.api.metrics import mean_stderr

    # acc picks the higher log-likelihood; acc_norm divides by the choice's length in characters
    assert metrics.mc_scores([-10.0, -12.0], ["ab", "abcdefgh"], 1) == {"acc": 0.0, "acc_norm": 1.0}
    xs = [1.0, 0.0, 1.0, 1.0, 0.0]
    assert metrics.mean_stderr(xs) == pytest.approx((0.6, mean_stderr(xs)))
    assert metrics.gsm8k_strict("so 3+4 = 7\n#### 1,234") == "1234"
    assert metrics.gsm8k_strict("the answer is 7") is None
    assert metrics.gsm8k_flexible("first 12 then $1,500.") == "1500"
    assert metrics.char_f1("東京都", ["東京"]) == pytest.approx(0.8) and metrics.exact_match(" 東京 ", ["東京"]) == 1.0


def test_run_task_resumes_and_keeps_finished_items(tiny_model, byte_tokenizer, tmp_path, monkeypatch):
    from zerollm.eval import runner

    items = [{"context": f"item {i}:", "choices": [" yes", " no", " maybe"], "label": i % 3, "line": i + 1}
             for i in range(10)]
    task = Task("toy", "multiple_choice", items)
    model = tiny_model(seed=4)
    full = run_task(task, Scorer(model, byte_tokenizer), tmp_path / "a", show_progress=False)
    monkeypatch.setattr(runner, "CHUNK", 4)
    calls = []
    real = runner._score_chunk

    def flaky(task, scorer, idx, *a):
        calls.append(list(idx))
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted after the first chunk was written
        return real(task, scorer, idx, *a)

    monkeypatch.setattr(runner, "_score_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_task(task, Scorer(model, byte_tokenizer), tmp_path / "b", show_progress=False)
    assert len((tmp_path / "b" / "toy.items.jsonl").read_text().splitlines()) == 4
    again = run_task(task, Scorer(model, byte_tokenizer), tmp_path / "b", show_progress=False)
    assert calls[2:] == [[4, 5, 6, 7], [8, 9]]  # only the rest was scored
    assert again["resumed_items"] == 4 and again["metrics"] == full["metrics"]
    np.testing.assert_allclose([r["lls"] for r in again["records"]], [r["lls"] for r in full["records"]],
                               atol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        run_task(task, Scorer(model, byte_tokenizer), tmp_path / "b", num_fewshot=2, show_progress=False)
    saved = json.loads((tmp_path / "b" / "toy.json").read_text())
    lls = np.array([r["lls"] for r in saved["records"]])
    assert saved["metrics"]["acc"]["value"] == pytest.approx(np.mean(lls.argmax(1) == [i % 3 for i in range(10)]))


def test_generation_goes_through_the_engine_and_self_consistency_votes(tiny_model, byte_tokenizer, tmp_path):
    from zerollm.engine.engine import Engine
    from zerollm.engine.generate import GenerationConfig

    model = tiny_model(seed=5)
    s = Scorer(model, byte_tokenizer, batch_size=4)
    prompts = ["12 + 30 =", "abc", "x"]
    got = s.generate(prompts, max_new_tokens=8)
    ref = Engine(model, byte_tokenizer).generate([list(p.encode()) for p in prompts],
                                                 GenerationConfig(max_new_tokens=8, temperature=0.0,
                                                                  stop_token_ids=[256]))
    assert [g[0] for g in got] == [r[0].text for r in ref]
    items = [{"prompt": p, "targets": ["7"], "shot": "7", "line": 1} for p in prompts]
    res = run_task(Task("toy_gen", "generate", items, metric="gsm8k", max_new_tokens=6), s, tmp_path,
                   samples=3, show_progress=False)
    rec = res["records"][0]
    assert len(rec["samples"]) == 3 and "maj@3" in res["metrics"] and "flexible_match" in res["metrics"]
    assert sum(rec["votes"].values()) <= 3


def test_few_shot_context_is_lm_eval_layout_and_never_the_item_itself():
    from zerollm.eval.runner import build_context

    items = [{"context": f"Q{i}:", "choices": ["a", "b"], "label": i % 2} for i in range(5)]
    task = Task("t", "multiple_choice", items, description="Answer.\n\n")
    for i in range(5):
        text = build_context(task, i, 3)
        shots = text[len("Answer.\n\n"):].split("\n\n")
        assert text.startswith("Answer.\n\n") and shots[-1] == f"Q{i}:" and len(shots) == 4
        assert all(s in {f"Q{j}: {'ab'[j % 2]}" for j in range(5) if j != i} for s in shots[:-1])
    assert build_context(task, 1, 3) == build_context(task, 1, 3)  # seeded by the item: reproducible
    gen = Task("g", "generate", [{"prompt": "Question: x\nAnswer:", "targets": ["1"], "shot": "so 1\n#### 1"}],
               fewshot_pool=[{"prompt": "Question: y\nAnswer:", "targets": ["2"], "shot": "so 2\n#### 2"}])
    assert build_context(gen, 0, 1) == "Question: y\nAnswer: so 2\n#### 2\n\nQuestion: x\nAnswer:"
