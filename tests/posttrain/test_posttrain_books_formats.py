"""The books' data formats (issue 19 item 7): preference data as chosen/rejected, as response_1/response_2/
preference and as rankings (all K·(K−1)/2 pairs weighted 1/C(K,2), InstructGPT eq. 1); SFT on the raw Alpaca
prompt; training length in epochs; malformed records named by file, line and field."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zerollm.chat.prompts import alpaca_prompt
from zerollm.data.sources import DataError
from zerollm.objectives.preference import bradley_terry_loss, dpo_loss
from zerollm.posttrain import data as D
from zerollm.posttrain import tasks
from zerollm.stages import posttrain as stages



@pytest.fixture(scope="module")
def byte_tokenizer():  # a zerollm byte tokenizer with the ChatML specials (conftest's has none)
    return tasks.byte_tokenizer()


TEXT = lambda msgs: msgs[-1]["content"]  # noqa: E731


def test_pairwise_preference_names_the_better_response():
    rec = {"prompt": "Say hi", "response_1": "go away", "response_2": "Hello!", "preference": 2}
    (prompt, better, worse, w), = D.preference_pairs(rec)
    assert TEXT(prompt) == "Say hi" and TEXT(better) == "Hello!" and TEXT(worse) == "go away" and w == 1.0
    (_, better, _, _), = D.preference_pairs({**rec, "preference": "response_1"})
    assert TEXT(better) == "go away"


def test_ranking_expands_to_all_pairs_with_instructgpt_weights():
    rec = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, 0, 3, 1]}  # c > a > d > b
    pairs = D.preference_pairs(rec)
    assert len(pairs) == math.comb(4, 2) == 6
    assert [(TEXT(b), TEXT(w)) for _, b, w, _ in pairs] == [("c", "a"), ("c", "d"), ("c", "b"), ("a", "d"),
                                                            ("a", "b"), ("d", "b")]
    assert all(w == pytest.approx(1 / 6) for *_, w in pairs)
    assert sum(w for *_, w in pairs) == pytest.approx(1.0)  # each prompt weighs one unit


def test_weighted_losses_count_each_prompt_once():
    rc, rr = torch.tensor([1.0, 0.2, -0.3, 0.5]), torch.tensor([0.0, 0.4, 0.1, 0.5])
    w = torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3])  # a pair record + one ranking of 3
    per_pair = -F.logsigmoid(rc - rr)
    expected = (per_pair[0] + per_pair[1:].mean()) / 2  # two prompts, each the mean of its pairs
    assert bradley_terry_loss(rc, rr, w) == pytest.approx(float(expected))
    assert bradley_terry_loss(rc, rr) == pytest.approx(float(per_pair.mean()))  # unweighted: the plain mean
    loss, _ = dpo_loss(rc, rr, torch.zeros(4), torch.zeros(4), beta=1.0, weight=w)
    assert loss == pytest.approx(float(expected))


def _jsonl(path: Path, recs: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_preference_data_batches_carry_weights(tmp_path, byte_tokenizer):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "yes", "rejected": "no"},
                                      {"prompt": "q2", "responses": ["x", "y", "z"], "ranking": [1, 2, 0]}])
    pairs = D.load_preference_pairs(f, byte_tokenizer, 64)
    assert len(pairs) == 1 + 3
    data = D.PreferenceData(pairs, 4, 0, shuffle=False)
    x, y, idx, w = data.next_batch()
    assert x.shape[0] == 8 and idx.tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(w, torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3]))


@pytest.mark.parametrize("rec,field", [
    ({"prompt": "p", "response_1": "a", "response_2": "b", "preference": 3}, "'preference'"),
    ({"prompt": "p", "response_1": "a", "response_2": "b"}, "'preference'"),
    ({"response_1": "a", "response_2": "b", "preference": 1}, "'prompt'"),
    ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}, "'ranking'"),
    ({"prompt": "p", "responses": ["a", "b"], "ranking": [1, 2]}, "'ranking'"),
    ({"prompt": "p", "responses": ["a", ""], "ranking": [1, 0]}, "'responses[1]'"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "'chosen'"),
])
def test_malformed_preference_records_name_file_line_and_field(tmp_path, byte_tokenizer, rec, field):
    f = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, rec])
    with pytest.raises(DataError) as e:
        D.load_preference_pairs(f, byte_tokenizer, 64)
    assert f"{f}:2:" in str(e.value) and field in str(e.value)


def test_raw_alpaca_sft_example(byte_tokenizer):
    rec = {"instruction": "Name a color.", "input": "", "output": "Blue."}
    ids, labels = D.encode_alpaca(rec, byte_tokenizer, 512)
    full = ids + [labels[-1]]
    assert byte_tokenizer.decode(full[:-1]) == alpaca_prompt("Name a color.") + "Blue."  # no chat markup
    assert full[-1] == byte_tokenizer.eos_id
    trained = [t for t in labels if t != -100]
    assert byte_tokenizer.decode(trained[:-1]) == "Blue." and trained[-1] == byte_tokenizer.eos_id
    ids2, _ = D.encode_alpaca({**rec, "input": "sky"}, byte_tokenizer, 512)
    assert byte_tokenizer.decode(ids2).startswith(alpaca_prompt("Name a color.", "sky"))


def test_raw_alpaca_needs_alpaca_fields(tmp_path, byte_tokenizer):
    f = _jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o"}, {"instruction": "i2"}])
    with pytest.raises(DataError, match=rf"{f}:2: field 'output'"):
        D.load_sft_examples(f, byte_tokenizer, 64, prompt_format="alpaca")


def test_epochs_to_steps():
    assert D.steps_for_epochs(2, 10, 4) == 5
    assert D.steps_for_epochs(0.5, 10, 4) == 2
    with pytest.raises(ValueError):
        D.steps_for_epochs(0, 10, 4)


def _cfg(d: Path, out: str, data: Path, **kw) -> dict:
    return {"model": str(d / "base"), "out": str(d / out), "data": [str(data)], "max_len": 200, "val_fraction": 0.2,
            **kw, "train": {"steps": 999, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "eval_every": 100,
                            "ckpt_every": 100, "log_every": 1, "progress": False, "eval_at_start": False}}


def test_stages_train_on_alpaca_and_rankings_for_epochs(tmp_path):
    tasks.init_model_dir(tmp_path / "base", tasks.byte_tokenizer(), n_layer=1, d_model=32, n_head=2, max_seq_len=256)
    alpaca = _jsonl(tmp_path / "alpaca.jsonl", [{"instruction": f"Add {i} and 1.", "input": "", "output": str(i + 1)}
                                                for i in range(10)])
    out = stages.sft(None, _cfg(tmp_path, "sft", alpaca, template="alpaca", epochs=2))
    assert out["steps"] == 4  # 8 training examples (2 held out) × 2 epochs / batch 4
    ranks = _jsonl(tmp_path / "ranks.jsonl", [{"prompt": f"p{i}", "responses": ["good", "ok", "bad"],
                                               "ranking": [0, 1, 2]} for i in range(4)])
    out = stages.reward(None, _cfg(tmp_path, "rm", ranks, epochs=1))
    assert out["steps"] == math.ceil((12 - 2) / 4)  # 12 pairs, 2 held out, one epoch
