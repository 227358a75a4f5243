"""Tests for zerollm.data.loader.TokenLoader: shapes, determinism, exact resume, the DDP split
property the training loop relies on, sequential evaluation and multi-shard windows."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zerollm.artifacts import write_manifest
from zerollm.data.loader import TokenLoader
from zerollm.data.prepare import data_prepare
from zerollm.data.shards import ShardWriter


@pytest.fixture(scope="module")
def shards(tmp_path_factory, make_byte_tokenizer):
    """A prepared shards dir: 3 train shards of 4000 tokens (+ rest), a val split."""
    d = tmp_path_factory.mktemp("loader")
    texts = [f"Doc {i}: " + "some words here. " * (i % 9 + 1) for i in range(400)]
    (d / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    data_prepare([d / "in.jsonl"], make_byte_tokenizer(), d / "shards", val_fraction=0.1,
                 shard_tokens=4000, show_progress=False)
    return d / "shards"


@pytest.fixture
def numbered(tmp_path):
    """Shards whose token at stream position p is p % 60000 (uint16): windows reveal their origin.
    Shard sizes 1000, 700, 1300."""
    out = tmp_path / "numbered"
    out.mkdir()
    stream = np.arange(3000) % 60000
    sizes, start, train = [1000, 700, 1300], 0, []
    for k, n in enumerate(sizes):
        w = ShardWriter(out, f"part{k}", "uint16", shard_tokens=n)
        w.write(stream[start:start + n])
        [entry] = w.close()
        train.append(entry)
        start += n
    write_manifest(out, "shards", dtype="uint16", vocab_size=60000, eos_id=0, tokenizer_hash="x",
                   train=train, val=train[:1], totals={"bytes_per_token": 2.0, "tokens": 3000},
                   splits={"train": {"bytes_per_token": 2.5}})
    return out


def batches(loader, n):
    return [loader.next_batch() for _ in range(n)]


def test_shapes_dtype_and_shift(shards):
    L = TokenLoader(shards, batch_size=4, seq_len=32)
    x, y = L.next_batch()
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert L.tokens == sum(e["tokens"] for e in L.manifest["train"])
    assert L.bytes_per_token == pytest.approx(L.manifest["splits"]["train"]["bytes_per_token"])
    assert L.vocab_size == 257 and L.eos_id == 256


def test_windows_are_contiguous_stream_slices_within_one_shard(numbered):
    L = TokenLoader(numbered, batch_size=64, seq_len=50, seed=3)
    bounds = [(0, 1000), (1000, 1700), (1700, 3000)]
    for _ in range(10):
        x, y = L.next_batch()
        w = torch.cat([x, y[:, -1:]], dim=1).numpy()          # (B, T+1)
        assert (np.diff(w, axis=1) == 1).all()                 # consecutive stream positions
        for row in w:
            assert any(lo <= row[0] and row[-1] < hi for lo, hi in bounds)
    assert L.bytes_per_token == 2.5


def test_random_stream_is_deterministic_and_seeded(shards):
    a = batches(TokenLoader(shards, batch_size=4, seq_len=16, seed=1), 5)
    b = batches(TokenLoader(shards, batch_size=4, seq_len=16, seed=1), 5)
    c = batches(TokenLoader(shards, batch_size=4, seq_len=16, seed=2), 5)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))
    assert not torch.equal(a[0][0], a[1][0])


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_resume_is_exact(shards, mode):
    L = TokenLoader(shards, batch_size=4, seq_len=16, seed=7, mode=mode)
    batches(L, 5)
    state = json.loads(json.dumps(L.state_dict()))          # survives a JSON round trip
    expected = batches(L, 6)
    R = TokenLoader(shards, batch_size=4, seq_len=16, seed=999, mode=mode)
    R.load_state_dict(state)
    got = batches(R, 6)
    assert all(torch.equal(e[0], g[0]) and torch.equal(e[1], g[1]) for e, g in zip(expected, got))


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_ddp_ranks_split_the_same_global_batch(shards, mode):
    """world_size=2 with B/2 per rank == world_size=1 with B, rank 0 the first half."""
    single = TokenLoader(shards, batch_size=8, seq_len=16, seed=5, mode=mode)
    ranks = [TokenLoader(shards, batch_size=4, seq_len=16, seed=5, mode=mode, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(5):
        x, y = single.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert not torch.equal(parts[0][0], parts[1][0])
    # resuming a world_size=1 run with world_size=2 (same global batch) continues the same stream
    state = single.state_dict()
    for r in ranks:
        r.load_state_dict(state)
    x, _ = single.next_batch()
    assert torch.equal(torch.cat([r.next_batch()[0] for r in ranks]), x)


def test_eval_batches_walk_val_once_and_agree_across_ranks(shards):
    V = TokenLoader(shards, split="val", batch_size=4, seq_len=16, mode="sequential")
    n_tokens = V.tokens
    evals = list(V.iter_eval_batches())
    assert len(evals) == V.num_eval_batches() == -(-((n_tokens - 1) // 16) // 4)
    xs = torch.cat([x for x, _ in evals]).reshape(-1)[: ((n_tokens - 1) // 16) * 16]
    from zerollm.artifacts import read_manifest
    from zerollm.data.shards import open_shard

    m = read_manifest(shards, "shards")
    [entry] = m["val"]
    stream = torch.from_numpy(np.asarray(open_shard(shards / entry["file"], m["dtype"]), dtype=np.int64))
    assert torch.equal(xs, stream[: len(xs)])                   # every window once, in order
    assert len(list(V.iter_eval_batches(max_batches=2))) == 2
    assert V.batch_index == 0                                    # eval does not move the counter
    # two ranks: same number of batches, together the single-rank batches
    R = [TokenLoader(shards, split="val", batch_size=2, seq_len=16, mode="sequential", rank=r,
                     world_size=2) for r in range(2)]
    per_rank = [list(r.iter_eval_batches()) for r in R]
    assert len(per_rank[0]) == len(per_rank[1]) == len(evals)
    for k, (x, _) in enumerate(evals):
        assert torch.equal(torch.cat([per_rank[0][k][0], per_rank[1][k][0]]), x)
    # a random-mode loader evaluates with the same sequential windows
    T = TokenLoader(shards, split="val", batch_size=4, seq_len=16, mode="random")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(T.iter_eval_batches(), evals))


def test_errors_are_clear(shards, numbered):
    with pytest.raises(ValueError, match="no window of seq_len"):
        TokenLoader(numbered, batch_size=1, seq_len=5000)
    with pytest.raises(ValueError, match="rank"):
        TokenLoader(shards, batch_size=1, seq_len=8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="split"):
        TokenLoader(shards, split="test", batch_size=1, seq_len=8)
    # a shard file that does not match the manifest
    f = numbered / "part1_000000.bin"
    f.write_bytes(f.read_bytes()[:-2])
    with pytest.raises(ValueError, match="inconsistent"):
        TokenLoader(numbered, batch_size=1, seq_len=8)


def test_uint32_shards_load(tmp_path, make_byte_tokenizer):
    big = make_byte_tokenizer(vocab_size=70000, eos_id=69999)
    (tmp_path / "a.txt").write_text("hello world, " * 100)
    data_prepare([tmp_path / "a.txt"], big, tmp_path / "s", val_fraction=0, show_progress=False)
    x, y = TokenLoader(tmp_path / "s", batch_size=2, seq_len=8).next_batch()
    assert x.max() < 70000 and x.dtype == torch.int64
    seq = TokenLoader(tmp_path / "s", batch_size=1, seq_len=len("hello world, ") * 100, mode="sequential")
    _, y = seq.next_batch()
    assert y[0, -1].item() == 69999                               # the document's eos
