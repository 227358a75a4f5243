"""Unigram LM and SentencePiece-mode BPE: parity with the `sentencepiece` library (import and export),
the .model wire format, n-best and sampling, training quality, bad input."""
from __future__ import annotations

import collections
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerollm.data.aozora import read_aozora
from zerollm.tokenizer.bpe_sp import train_bpe_sp
from zerollm.tokenizer.sentencepiece_model import SentencePieceModel, parse_fields, read_model
from zerollm.tokenizer.spm import SentencePieceTokenizer, import_sentencepiece
from zerollm.tokenizer.unigram import train_unigram
from zerollm.tokenizer.unigram_train import digamma

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def data(shared_data) -> dict:
    root = shared_data  # tests/conftest.py: the shared data dir (skips only off CI when it is absent)
    az = root / "aozora"
    shakespeare = (root / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    return {
        "root": root,
        "ja_train": [read_aozora(az / f) for f in ("1567_ruby_4948.txt", "127_ruby_150.txt", "301_ruby_5915.txt")],
        "ja_test": read_aozora(az / "92_ruby_164.txt") + read_aozora(az / "752_ruby_2438.txt")[:20000],
        "en_train": shakespeare[:120_000],
        "en_test": shakespeare[-30_000:],
    }


def _lines(text: str) -> list[str]:
    return [ln for ln in text.split("\n") if ln.strip()]


def _assert_same(tok: SentencePieceTokenizer, sp, text: str) -> None:
    lines = _lines(text) + ["", " ", "  two  spaces ", "ＡＢＣ１２３ｶﾀｶﾅ", "emoji 🦜 and 𠮷野家", "\t tab"]
    mismatches = [ln for ln in lines if tok.encode(ln) != sp.encode(ln)]
    assert not mismatches, f"{len(mismatches)} lines differ, e.g. {mismatches[0]!r}"
    ids = [sp.encode(ln) for ln in lines]
    assert [tok.decode(x) for x in ids] == [sp.decode(x) for x in ids]


@pytest.fixture(scope="module")
def sp_unigram(data, tmp_path_factory):
    """A Unigram model trained by the library itself (default nmt_nfkc normalization)."""
    d = tmp_path_factory.mktemp("spu")
    corpus = d / "corpus.txt"
    corpus.write_text("".join(data["ja_train"]) + data["en_train"], encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "uni"), vocab_size=2500,
                                   model_type="unigram", character_coverage=0.995, num_threads=2,
                                   minloglevel=2)
    return d / "uni.model"


@pytest.fixture(scope="module")
def ours(data):
    return train_unigram(data["ja_train"] + [data["en_train"]], 2500, character_coverage=0.995)


# ---------------------------------------------------------------- wire format
def test_model_file_roundtrip_is_byte_identical(data):
    path = data["root"] / "llama2c_stories260K" / "tok512.model"
    raw = path.read_bytes()
    m = read_model(path)
    assert m.model_type == "bpe" and len(m.pieces) == 512 and m.trainer("byte_fallback")
    assert m.to_bytes() == raw
    assert SentencePieceModel.from_bytes(m.to_bytes()).pieces == m.pieces


def test_wire_format_negative_int_and_defaults():
    m = SentencePieceModel(pieces=[("<unk>", 0.0, 2), ("a", -1.5, 1)], trainer_spec={"pad_id": -1, "model_type": 1},
                           normalizer_spec={"name": "identity"})
    back = SentencePieceModel.from_bytes(m.to_bytes())
    assert back.trainer("pad_id") == -1 and back.trainer("bos_id") == 1  # default filled in
    assert back.normalizer("add_dummy_prefix") is True and back.pieces == m.pieces
    with pytest.raises(ValueError):
        parse_fields(b"\x0a\x05ab")  # length 5, only 2 bytes


# ---------------------------------------------------------------- import: library models
def test_tok512_bpe_model_encodes_and_decodes_like_the_library(data):
    path = data["root"] / "llama2c_stories260K" / "tok512.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    tok = import_sentencepiece(path)
    assert tok.algorithm == "bpe_sp"
    _assert_same(tok, sp, data["ja_test"][:15000] + data["en_test"])


def test_library_unigram_nfkc_model_encodes_like_the_library(data, sp_unigram):
    sp = spm.SentencePieceProcessor(model_file=str(sp_unigram))
    tok = import_sentencepiece(sp_unigram)
    assert tok.algorithm == "unigram" and tok.normalizer.charsmap is not None
    _assert_same(tok, sp, data["ja_test"] + data["en_test"])


def test_nbest_matches_the_library(sp_unigram):
    sp = spm.SentencePieceProcessor(model_file=str(sp_unigram))
    tok = import_sentencepiece(sp_unigram)
    for text in ["吾輩は猫である。名前はまだ無い。", "Hello world, this is unbelievable", "メロスは激怒した"]:
        got = tok.nbest_encode(text, 6)
        assert got == sp.nbest_encode_as_ids(text, 6)
        assert got[0] == tok.encode(text) and len({tuple(x) for x in got}) == len(got)


# ---------------------------------------------------------------- export: our models
def test_our_unigram_exports_a_model_the_library_encodes_identically(data, ours, tmp_path):
    ours.export_model(tmp_path / "ours.model")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "ours.model"))
    assert sp.get_piece_size() == 2500
    _assert_same(ours, sp, data["ja_test"] + data["en_test"])


def test_unigram_is_lossless_and_save_load_keeps_hash(data, ours, tmp_path):
    text = data["ja_test"][:3000] + "\n  spaces  \n" + data["en_test"][:3000] + "🦜\x00\u3000"
    assert ours.decode(ours.encode(text)) == text
    ours.save(tmp_path / "tok")
    back = SentencePieceTokenizer.load(tmp_path / "tok")
    assert back.hash == ours.hash and back.encode(text) == ours.encode(text)
    assert (tmp_path / "tok" / "tokenizer.model").is_file()
    assert back.vocab_size == 2500 + 16 and back.eos_id == 2501


def test_special_tokens(ours):
    text = "<|im_start|>user\nこんにちは<|im_end|>"
    ids = ours.encode(text, allowed_special="all")
    assert ids[0] == ours.special_tokens["<|im_start|>"] and ids[-1] == ours.special_tokens["<|im_end|>"]
    assert ours.decode(ids) == text
    assert ours.special_tokens["<|im_start|>"] not in ours.encode(text)  # "none": plain text
    with pytest.raises(ValueError, match="unknown special"):
        ours.encode(text, allowed_special={"<|nope|>"})


@pytest.mark.parametrize("by_script", [True, False])
def test_bpe_sp_on_japanese_exports_and_matches_the_library(data, tmp_path, by_script):
    tok = train_bpe_sp(data["ja_train"] + [data["en_train"]], 2500, character_coverage=0.995,
                       split_by_unicode_script=by_script)
    assert tok.algorithm == "bpe_sp" and tok.table.chunk_safe
    crossing = [p for p in tok.table.pieces if p.endswith("。") and len(p) > 1]  # merges across scripts
    assert bool(crossing) == (not by_script)
    assert any(len(p) >= 3 and "\u3040" <= p[0] <= "\u30ff" for p in tok.table.pieces)  # kana merges
    tok.export_model(tmp_path / "bpe.model")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    _assert_same(tok, sp, data["ja_test"] + data["en_test"])
    text = data["ja_test"][:2000]
    assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------- n-best and sampling
def test_sampling_follows_the_unigram_distribution(ours):
    text = "先生と私"
    norm = ours.normalizer(text)
    alpha = 0.5
    best = ours._seg.nbest(norm, 10_000)  # every segmentation with its score
    z = sum(math.exp(alpha * s) for _, s in best)
    expected = {tuple(ours._to_ids(norm, seg)): math.exp(alpha * s) / z for seg, s in best}
    rng = random.Random(0)
    n = 4000
    counts = collections.Counter(tuple(ours.sample_encode(text, alpha, rng=rng)) for _ in range(n))
    assert set(counts) <= set(expected)
    for seg, p in expected.items():
        if p > 0.05:
            assert abs(counts[seg] / n - p) < 0.03, (seg, counts[seg] / n, p)
    assert ours.sample_encode(text, 0.3, seed=1) == ours.sample_encode(text, 0.3, seed=1)
    assert ours.decode(ours.sample_encode("吾輩は猫である", 0.1, seed=3)) == "吾輩は猫である"
    assert ours.sample_encode(text, 1000.0, seed=0) == ours.encode(text)  # large alpha -> Viterbi


# ---------------------------------------------------------------- training
def test_training_quality_close_to_the_library(data, tmp_path):
    corpus = tmp_path / "ja.txt"
    corpus.write_text("".join(data["ja_train"]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "ref"), vocab_size=3000,
                                   model_type="unigram", normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, byte_fallback=True,
                                   character_coverage=0.9995, num_threads=2, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "ref.model"))
    tok = train_unigram(data["ja_train"], 3000)
    lines = _lines(data["ja_test"])
    ours_n = sum(len(tok.encode(ln)) for ln in lines)
    ref_n = sum(len(sp.encode(ln)) for ln in lines)
    assert ours_n <= 1.05 * ref_n, (ours_n, ref_n)


def test_digamma():
    assert abs(digamma([1.0])[0] + 0.5772156649) < 1e-6
    assert abs(digamma([10.5])[0] - 2.3030010) < 1e-5


def test_training_is_deterministic(data):
    a = train_unigram([data["ja_train"][0]], 1000, character_coverage=0.99)
    b = train_unigram([data["ja_train"][0]], 1000, character_coverage=0.99)
    assert a.hash == b.hash


# ---------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        train_unigram(["", "\n\n  \n"], 500)
    with pytest.raises(ValueError, match="empty corpus"):
        train_bpe_sp([], 500)
    with pytest.raises(ValueError, match="smaller than the"):
        train_unigram(["abcdefghij klmnop"], 262)
    with pytest.raises(ValueError, match="too high for this corpus"):
        train_unigram(["abc abc abd"], 1000)
    with pytest.raises(ValueError, match="too high for this corpus"):
        train_bpe_sp(["abc abc abd"], 1000)
    with pytest.raises(ValueError, match="not a valid SentencePiece"):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".model") as f:
            f.write(b"\xff\xff\xff")
            f.flush()
            read_model(f.name)


def test_unseen_characters_fall_back_to_bytes(ours):
    text = "龘🦜"
    ids = ours.encode(text)
    assert all(ours.table.types[i] == 6 for i in ids[1:])  # <0xXX> byte pieces
    assert ours.decode(ids) == text


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
       | st.text(alphabet="吾輩は猫である。 \n\t　ＡｶﾀcaféX🦜", max_size=40))
def test_roundtrip_any_text(ours, text):
    ids = ours.encode(text)
    assert ours.decode(ids) == text
    assert all(0 <= i < ours.vocab_size for i in ids)
