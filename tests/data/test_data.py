"""Tests for zerollm.data: readers, shard files, data_prepare and the default corpus.

A byte-level stub tokenizer (conftest's ByteTokenizer: ids 0..255 = bytes, eos after them) stands in for the
real BPE so these tests pin down the data layer alone; one integration test at the end uses the real tokenizer.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerollm.artifacts import read_manifest
from zerollm.data import prepare as prepare_mod
from zerollm.data.prepare import data_prepare, prepare_summary, split_pieces, val_selector
from zerollm.data.shards import ShardWriter, dtype_for_vocab, open_shard
from zerollm.data.sources import DataError, DataWarning, SourceStats, iter_documents


def write_jsonl(path: Path, texts, field="text") -> Path:
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def split_stream(ids: np.ndarray, eos: int) -> list[str]:
    """A token stream of the byte tokenizer back to its documents (each must end with eos)."""
    ids = ids.tolist()
    assert not ids or ids[-1] == eos
    docs, cur = [], []
    for i in ids:
        if i == eos:
            docs.append(bytes(cur).decode("utf-8"))
            cur = []
        else:
            cur.append(i)
    return docs


def read_split(out: Path, split: str) -> np.ndarray:
    m = read_manifest(out, "shards")
    parts = [np.asarray(open_shard(out / s["file"], m["dtype"], s["tokens"])) for s in m[split]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def docs_of(paths, **kw) -> list[str]:
    return [d.text for d in iter_documents(paths, **kw)]


TEXTS = [f"Document number {i}: " + "héllo wörld. " * (i % 7 + 1) for i in range(300)]


# ----------------------------------------------------------------------------------------------
# readers


def test_txt_modes(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("first line\nsecond line\n\n\nthird para\nstill third\n", encoding="utf-8")
    [doc] = iter_documents([p])
    assert doc.text.startswith("first line") and doc.line == 1 and doc.source == str(p)
    lines = list(iter_documents([p], txt_mode="line"))
    assert [d.text for d in lines] == ["first line", "second line", "third para", "still third"]
    assert [d.line for d in lines] == [1, 2, 5, 6]
    paras = list(iter_documents([p], txt_mode="paragraph"))
    assert [d.text for d in paras] == ["first line\nsecond line", "third para\nstill third"]
    assert [d.line for d in paras] == [1, 5]


def test_jsonl_and_text_field(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", ["one", "two", "three"], field="content")
    docs = list(iter_documents([p], text_field="content"))
    assert [d.text for d in docs] == ["one", "two", "three"] and [d.line for d in docs] == [1, 2, 3]


def test_json_list_and_single_object(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    (tmp_path / "one.json").write_text(json.dumps({"text": "only"}))
    assert docs_of([tmp_path / "list.json"]) == ["a", "b"]
    assert docs_of([tmp_path / "one.json"]) == ["only"]


def test_parquet_row_groups_and_nulls(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [f"row {i}" for i in range(25)] + [None, "last"]
    pq.write_table(pa.table({"text": texts, "n": list(range(27))}), tmp_path / "a.parquet",
                   row_group_size=10)
    assert pq.ParquetFile(tmp_path / "a.parquet").num_row_groups == 3
    stats = SourceStats()
    with pytest.warns(DataWarning, match=r"a\.parquet\[row 26\].*null"):
        docs = list(iter_documents([tmp_path / "a.parquet"], stats=stats))
    assert [d.text for d in docs] == [t for t in texts if t is not None]
    assert stats.malformed == 1
    with pytest.raises(DataError, match=r"no column 'body'.*\['text', 'n'\]"):
        list(iter_documents([tmp_path / "a.parquet"], text_field="body"))


def test_directory_recursive_sorted_and_glob(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("z")
    (tmp_path / "b" / "a.txt").write_text("ba")
    (tmp_path / "a.txt").write_text("a")
    write_jsonl(tmp_path / "c.jsonl", ["c1", "c2"])
    (tmp_path / ".hidden.txt").write_text("hidden")
    (tmp_path / "notes.rst").write_text("unsupported")
    with pytest.warns(DataWarning, match="skipping 1 file"):
        assert docs_of([tmp_path]) == ["a", "ba", "z", "c1", "c2"]
    assert docs_of([str(tmp_path / "**" / "*.txt")]) == ["a", "ba", "z"]
    assert docs_of([str(tmp_path / "*.jsonl"), str(tmp_path / "a.txt")]) == ["c1", "c2", "a"]


def test_malformed_jsonl_reported_with_line_and_run_continues(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"text": "good 1"}\n{"text": broken\n{"other": "x"}\n{"text": 5}\n'
                  b'[1, 2]\n\n{"text": "good \xff 2"}\n')
    stats = SourceStats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs = list(iter_documents([p], stats=stats))
    assert [d.text for d in docs] == ["good 1", "good \ufffd 2"]
    assert [d.line for d in docs] == [1, 7]
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any(f"{p}:2: invalid JSON" in m for m in messages)
    assert any(f"{p}:3: missing field 'text'" in m for m in messages)
    assert any(f"{p}:4: field 'text' is int" in m for m in messages)
    assert any(f"{p}:5: expected an object" in m for m in messages)
    assert any(f"{p}:7: invalid UTF-8" in m for m in messages)
    assert (stats.malformed, stats.repaired, stats.documents) == (4, 1, 2)


def test_no_usable_record_fails_with_one_clear_message(tmp_path):
    p = write_jsonl(tmp_path / "wrong.jsonl", ["a", "b"], field="content")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError) as e:
            list(iter_documents([p]))
    msg = str(e.value)
    assert "wrong.jsonl" in msg and "no usable record" in msg and "2 missing field 'text'" in msg
    assert "'content'" in msg  # suggests the field the records do have


def test_missing_and_unsupported_inputs(tmp_path):
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(DataError) as e:
        iter_documents([tmp_path / "ok.txt", tmp_path / "nope.jsonl", tmp_path / "gone" / "*.txt",
                        tmp_path / "data.csv"])
    msg = str(e.value)
    assert "nope.jsonl: no such file" in msg and "glob matches no" in msg
    assert "data.csv: unsupported file type '.csv'" in msg


def test_gzip_jsonl(tmp_path):
    import gzip

    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write('{"text": "zipped"}\n')
    assert docs_of([tmp_path / "a.jsonl.gz"]) == ["zipped"]


# ----------------------------------------------------------------------------------------------
# shards


def test_dtype_selection():
    assert dtype_for_vocab(257) == np.dtype("<u2") and dtype_for_vocab(65536) == np.dtype("<u2")
    assert dtype_for_vocab(65537) == np.dtype("<u4") and dtype_for_vocab(200_000) == np.dtype("<u4")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 65535), max_size=40), max_size=8), st.integers(1, 50))
def test_shard_writer_roundtrip(tmp_path_factory, chunks, shard_tokens):
    d = tmp_path_factory.mktemp("shards")
    with ShardWriter(d, "train", "uint16", shard_tokens) as w:
        for c in chunks:
            w.write(np.array(c, dtype=np.int64))
    shards = w.close()
    flat = [i for c in chunks for i in c]
    assert [s["tokens"] for s in shards[:-1]] == [shard_tokens] * (len(shards) - 1)
    got = [int(i) for s in shards for i in open_shard(d / s["file"], "uint16", s["tokens"])]
    assert got == flat
    assert sorted(os.listdir(d)) == [s["file"] for s in shards]  # no temp files left
    assert (d / "train_000000.bin").exists() == bool(flat)


def test_shard_writer_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        ShardWriter(tmp_path, "train", "uint16").write(np.array([70000]))


# ----------------------------------------------------------------------------------------------
# data_prepare


@pytest.fixture
def corpus_files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", TEXTS[:200])
    write_jsonl(d / "b.jsonl", TEXTS[200:])
    return d


def test_prepare_roundtrip_val_split_and_manifest(tmp_path, corpus_files, byte_tokenizer):
    tok = byte_tokenizer
    m = data_prepare([corpus_files], tok, tmp_path / "out", val_fraction=0.1, shard_tokens=5000,
                     show_progress=False)
    out = tmp_path / "out"
    assert m == read_manifest(out, "shards")
    assert m["dtype"] == "uint16" and m["eos_id"] == 256 and m["tokenizer_hash"] == tok.hash
    train, val = split_stream(read_split(out, "train"), 256), split_stream(read_split(out, "val"), 256)
    assert len(val) == 30 and len(train) == 270
    is_val = val_selector(0.1, seed=0)
    assert val == [t for i, t in enumerate(TEXTS) if is_val(i)]
    assert train == [t for i, t in enumerate(TEXTS) if not is_val(i)]
    assert len(m["train"]) > 1 and all(s["tokens"] == 5000 for s in m["train"][:-1])
    t = m["totals"]
    assert t["documents"] == 300 and t["malformed"] == 0
    assert t["bytes"] == sum(len(x.encode()) for x in TEXTS) and t["tokens"] == t["bytes"] + 300
    assert t["bytes_per_token"] == pytest.approx(t["bytes"] / t["tokens"], rel=1e-5)
    assert [s["documents"] for s in m["sources"]] == [200, 100]
    assert all(len(s["sha256"]) == 64 for s in m["sources"])
    summary = prepare_summary(m)
    assert "300 documents" in summary and "uint16" in summary
    # the same seed reproduces the split byte for byte, another seed picks other documents
    data_prepare([corpus_files], tok, tmp_path / "again", val_fraction=0.1, shard_tokens=5000,
                 show_progress=False)
    assert (read_split(tmp_path / "again", "val") == read_split(out, "val")).all()
    data_prepare([corpus_files], tok, tmp_path / "seed1", val_fraction=0.1, seed=1, show_progress=False)
    assert split_stream(read_split(tmp_path / "seed1", "val"), 256) != val


def test_uint32_shards(tmp_path, corpus_files, make_byte_tokenizer):
    tok = make_byte_tokenizer(vocab_size=70000, eos_id=69999)
    m = data_prepare([corpus_files], tok, tmp_path / "out", show_progress=False)
    assert m["dtype"] == "uint32"
    ids = read_split(tmp_path / "out", "train")
    assert ids.dtype == np.dtype("<u4") and ids.max() == 69999
    assert (tmp_path / "out" / "train_000000.bin").stat().st_size == 4 * len(ids)
    docs = split_stream(ids, 69999) + split_stream(read_split(tmp_path / "out", "val"), 69999)
    assert sorted(docs) == sorted(TEXTS)


def test_worker_count_does_not_change_output(tmp_path, corpus_files, monkeypatch, byte_tokenizer):
    monkeypatch.setattr(prepare_mod, "BATCH_CHARS", 500)      # many batches in flight
    outs = []
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        data_prepare([corpus_files], byte_tokenizer, out, shard_tokens=3000, num_workers=workers,
                     show_progress=False)
        outs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))})
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) > 2


def test_failure_leaves_no_output(tmp_path, corpus_files, monkeypatch, byte_tokenizer, make_byte_tokenizer):
    monkeypatch.setattr(prepare_mod, "BATCH_CHARS", 500)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="exploded"):
        data_prepare([corpus_files], make_byte_tokenizer(fail_on="number 250:"), out, shard_tokens=1000,
                     show_progress=False)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]      # no temp dir left either
    # an existing output survives a failed re-run untouched
    data_prepare([corpus_files], byte_tokenizer, out, show_progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(RuntimeError):
        data_prepare([corpus_files], make_byte_tokenizer(fail_on="number 7:"), out, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_malformed_input_counted_in_manifest(tmp_path, byte_tokenizer):
    p = tmp_path / "m.jsonl"
    p.write_text('{"text": "fine"}\nnot json\n{"text": "also fine"}\n')
    with pytest.warns(DataWarning, match=r"m\.jsonl:2"):
        m = data_prepare([p], byte_tokenizer, tmp_path / "out", val_fraction=0, show_progress=False)
    assert m["totals"]["malformed"] == 1 and m["totals"]["documents"] == 2
    assert m["val"] == [] and "1 malformed" in prepare_summary(m)


def test_input_errors_raise_before_output(tmp_path, byte_tokenizer):
    with pytest.raises(DataError, match="no such file"):
        data_prepare([tmp_path / "missing.txt"], byte_tokenizer, tmp_path / "out", show_progress=False)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no usable record"):
        data_prepare([tmp_path / "empty.jsonl"], byte_tokenizer, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_single_document_splits_by_tokens(tmp_path, byte_tokenizer):
    text = "A single long book. " * 500
    (tmp_path / "book.txt").write_text(text)
    m = data_prepare([tmp_path / "book.txt"], byte_tokenizer, tmp_path / "out", val_fraction=0.05,
                     shard_tokens=4000, show_progress=False)
    assert m["settings"]["val_split"] == "tokens"
    train, val = read_split(tmp_path / "out", "train"), read_split(tmp_path / "out", "val")
    assert len(val) == int(np.ceil(0.05 * (len(text) + 1)))
    assert split_stream(np.concatenate([train, val]), 256) == [text]
    assert sum(s["tokens"] for s in m["train"]) == len(train)
    assert m["splits"]["val"]["tokens"] == len(val) and m["splits"]["train"]["tokens"] == len(train)


def test_long_documents_tokenized_in_pieces(tmp_path, monkeypatch, byte_tokenizer):
    text = "".join(f"line {i} of a long document\n" + ("\n" if i % 5 == 0 else "") for i in range(400))
    pieces = split_pieces(text, 1000)
    assert "".join(pieces) == text and all(len(p) <= 1000 for p in pieces) and len(pieces) > 5
    assert all(p.endswith("\n") for p in pieces[:-1])
    monkeypatch.setattr(prepare_mod, "MAX_PIECE_CHARS", 1000)
    write_jsonl(tmp_path / "long.jsonl", [text, "short one", text[::-1]])
    data_prepare([tmp_path / "long.jsonl"], byte_tokenizer, tmp_path / "out", val_fraction=0,
                 show_progress=False)
    assert split_stream(read_split(tmp_path / "out", "train"), 256) == [text, "short one", text[::-1]]


def test_tokenizer_object_with_save_is_copied(tmp_path, corpus_files, byte_tokenizer, make_byte_tokenizer):
    class SavingTokenizer(make_byte_tokenizer):
        def save(self, directory):
            Path(directory).mkdir(parents=True)
            (Path(directory) / "manifest.json").write_text('{"kind": "tokenizer"}')

    m = data_prepare([corpus_files], SavingTokenizer(), tmp_path / "out", show_progress=False)
    assert m["tokenizer"] == "tokenizer"
    assert (tmp_path / "out" / "tokenizer" / "manifest.json").is_file()


# ----------------------------------------------------------------------------------------------
# default corpus


def test_default_corpus_size_and_determinism(tmp_path, monkeypatch):
    from zerollm.data import corpus

    monkeypatch.setenv("ZEROLLM_CACHE_DIR", str(tmp_path / "cache1"))
    text = corpus.default_corpus_text()
    assert len(text.encode("utf-8")) >= 1_500_000
    assert "assert" in text and "Return" in text
    cached = list((tmp_path / "cache1").glob("corpus-py*.jsonl"))
    assert len(cached) == 1
    assert corpus.default_corpus_text() == text          # from the cache
    monkeypatch.setenv("ZEROLLM_CACHE_DIR", str(tmp_path / "cache2"))
    assert corpus.default_corpus_text() == text          # rebuilt from scratch: identical
    path = corpus.write_default_corpus(tmp_path / "corpus.jsonl")
    docs = list(iter_documents([path]))
    assert len(docs) > 300 and "\n\n".join(d.text for d in docs) == text


# ----------------------------------------------------------------------------------------------
# integration with the real BPE tokenizer


def test_prepare_with_trained_bpe_tokenizer(tmp_path):
    bpe = pytest.importorskip("zerollm.tokenizer.bpe")
    from zerollm.data.loader import TokenLoader
    from zerollm.tokenizer.base import load_tokenizer

    texts = TEXTS + ["a document that mentions <|eos|> and <|bos|> as plain text"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # tiny corpus: fewer merges than asked for
        tok = bpe.train_bpe(texts, vocab_size=600, show_progress=False)
    tok.save(tmp_path / "tok")
    write_jsonl(tmp_path / "in.jsonl", texts)
    m = data_prepare([tmp_path / "in.jsonl"], tmp_path / "tok", tmp_path / "out", val_fraction=0.05,
                     show_progress=False)
    out = tmp_path / "out"
    copied = load_tokenizer(out / "tokenizer")
    assert m["tokenizer_hash"] == tok.hash == copied.hash and m["eos_id"] == tok.eos_id
    eos = tok.eos_id
    is_val = val_selector(0.05, seed=0)
    for split, want in (("train", [t for i, t in enumerate(texts) if not is_val(i)]),
                        ("val", [t for i, t in enumerate(texts) if is_val(i)])):
        ids = read_split(out, split).tolist()
        assert ids.count(eos) == len(want)                  # "<|eos|>" in text stayed text
        docs, cur = [], []
        for i in ids:
            if i == eos:
                docs.append(copied.decode(cur))
                cur = []
            else:
                cur.append(i)
        assert docs == want
    assert m["totals"]["bytes_per_token"] > 1.0             # BPE compresses
    x, y = TokenLoader(out, batch_size=2, seq_len=16).next_batch()
    assert x.shape == (2, 16) and int(x.max()) < tok.vocab_size
