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


def test_encode_pairs_one_tokenizer_per_side(byte_tokenizer):
    class Words:  # a stand-in target tokenizer: one id per word (its length)
        def encode_batch(self, texts):
            return [[len(w) for w in t.split()] for t in texts]

    pairs = [("ab", "x yz"), ("c", "q " * 40)]
    assert encode_pairs(pairs[:1], byte_tokenizer, 32, tgt_tokenizer=Words()) == [(byte_tokenizer.encode("ab"), [1, 2])]
    with pytest.raises(DataError, match=r"dev\.tsv:2: target sentence is 41 tokens"):  # the target side's own count
        encode_pairs(pairs, byte_tokenizer, 32, "dev.tsv", tgt_tokenizer=Words())


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


def test_batcher_buckets_both_sides():
    """Sorting by (target, source) length over the corpus pads both sides little: the real tokens are
    >= 95% of the padded source + target positions, where bucketing by the longer side alone leaves far
    more source padding (targets here are a bit longer than their sources, as Japanese is than English)."""
    import random

    r = random.Random(0)
    src_lens = [r.randint(2, 16) for _ in range(5000)]
    pairs = [([3] * n, [4] * (n + r.randint(0, 6))) for n in src_lens]
    b = TokenBucketBatcher(pairs, 400, 0, 1, 2, seed=1)
    real = padded = 0
    for _ in range(b.batches_per_epoch):
        src, tgt_in, _ = b.next_batch()
        real += int((src != 0).sum()) + int((tgt_in != 0).sum())
        padded += src.numel() + tgt_in.numel()
    assert real / padded >= 0.95
    lengths = [max(len(s), len(t)) + 1 for s, t in pairs]
    by_longer = length_batches(lengths, 400, random.Random(1))
    src_pad = sum((max(len(pairs[i][0]) for i in bt) + 1) * len(bt) for bt in by_longer)
    assert sum(len(s) + 1 for s, _ in pairs) / src_pad < 0.85


def test_sharded_batcher_splits_the_same_batches_between_ranks():
    """Under DDP, ranks 0 and 1 take alternate batches of the one-process order (each group of two batches
    once, the epoch's odd last one skipped), and the global position resumes a one-process batcher."""
    pairs = [([3] * (i % 13 + 1), [4] * (i % 7 + 1)) for i in range(300)]
    one = TokenBucketBatcher(pairs, 60, 0, 1, 2, seed=5)
    n = one.batches_per_epoch
    whole = [one.next_batch() for _ in range(n - n % 2)]
    ranks = [TokenBucketBatcher(pairs, 60, 0, 1, 2, seed=5) for _ in range(2)]
    for r, b in enumerate(ranks):
        b.shard(r, 2)
    for k in range(len(whole) // 2):
        for r in range(2):
            assert all(torch.equal(u, v) for u, v in zip(ranks[r].next_batch(), whole[2 * k + r]))
    assert ranks[0].state_dict() == ranks[1].state_dict() == {"epoch": 0, "index": n - n % 2, "seed": 5}
    nxt = ranks[0].next_batch()  # the next group starts epoch 1 for every rank
    assert ranks[0].state_dict()["epoch"] == 1
    resumed = TokenBucketBatcher(pairs, 60, 0, 1, 2, seed=5)
    resumed.load_state_dict({"epoch": 1, "index": 0, "seed": 5})
    assert all(torch.equal(u, v) for u, v in zip(resumed.next_batch(), nxt))
