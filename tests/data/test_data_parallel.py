"""Parallel corpora: the three input forms, bad lines named by file and line, and the token-bucket batcher
(token budget, padding only within a batch, exact resume)."""
import json

import pytest
import torch

from zerollm.data.parallel import (
    TokenBucketBatcher,
    collate,
    encode_pairs,
    length_batches,
    read_parallel,
)
from zerollm.data.sources import DataError
from zerollm.objectives.base import IGNORE_INDEX


def write(p, lines):
    p.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return p


def test_three_input_forms_and_direction(tmp_path):
    en = write(tmp_path / "a.en", ["hello .", "good night ."])
    ja = write(tmp_path / "a.ja", ["こんにちは 。", "おやすみ 。"])
    pairs = [("hello .", "こんにちは 。"), ("good night .", "おやすみ 。")]
    assert read_parallel([en, ja], "en-ja") == pairs
    assert read_parallel([en, ja], "ja-en") == [(t, s) for s, t in pairs]
    tsv = write(tmp_path / "a.tsv", [f"{s}\t{t}" for s, t in pairs])
    jsonl = write(tmp_path / "a.jsonl", [json.dumps({"src": s, "tgt": t}, ensure_ascii=False) for s, t in pairs])
    assert read_parallel([tsv]) == pairs
    assert read_parallel([jsonl]) == pairs


def test_bad_input_names_file_and_line(tmp_path):
    en = write(tmp_path / "b.en", ["one .", "two .", "three ."])
    ja = write(tmp_path / "b.ja", ["一 。", "二 。"])
    with pytest.raises(DataError, match=r"b\.en has 3 lines but .*b\.ja has 2"):
        read_parallel([en, ja])
    ja2 = write(tmp_path / "c.ja", ["一 。", "  ", "三 。"])
    with pytest.raises(DataError, match=r"c\.ja:2: empty target"):
        read_parallel([en, ja2])
    with pytest.raises(DataError, match=r"d\.tsv:2: expected 2 tab-separated"):
        read_parallel([write(tmp_path / "d.tsv", ["a\tb", "no tab here"])])
    with pytest.raises(DataError, match=r"e\.jsonl:1: expected an object"):
        read_parallel([write(tmp_path / "e.jsonl", ['{"src": "x"}'])])


def test_over_long_sentence_names_line(byte_tokenizer):
    pairs = [("ab", "cd"), ("x" * 40, "y")]
    with pytest.raises(DataError, match=r"train\.en:2: source sentence is 41 tokens"):
        encode_pairs(pairs, byte_tokenizer, 32, "train.en")


def test_collate_teacher_forcing_layout():
    src, tgt_in, tgt_out = collate([([5, 6], [7]), ([8], [9, 10])], pad_id=0, bos_id=1, eos_id=2)
    assert src.tolist() == [[5, 6, 2], [8, 2, 0]]
    assert tgt_in.tolist() == [[1, 7, 0], [1, 9, 10]]
    assert tgt_out.tolist() == [[7, 2, IGNORE_INDEX], [9, 10, 2]]


def test_batches_respect_the_token_budget_and_cover_every_pair():
    import random

    lengths = [random.Random(i).randint(2, 30) for i in range(500)]
    batches = length_batches(lengths, 200, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(max(lengths[i] for i in b) * len(b) <= 200 for b in batches)
    # bucketing: padding waste is small compared with random batches
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.3 * sum(lengths)


def test_batcher_resumes_exactly():
    pairs = [([3] * (i % 13 + 1), [4] * (i % 7 + 1)) for i in range(300)]
    a = TokenBucketBatcher(pairs, 60, 0, 1, 2, seed=5)
    for _ in range(a.batches_per_epoch + 7):  # into the second epoch
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(10)]
    b = TokenBucketBatcher(pairs, 60, 0, 1, 2, seed=5)
    b.load_state_dict(state)
    for x, y in zip(expected, [b.next_batch() for _ in range(10)]):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
