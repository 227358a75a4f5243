"""GPT-2's released BPE imported into zerollm gives exactly the ids of Hugging Face `tokenizers`/`transformers`
built from the same two files (no network), and of tiktoken's own loader."""
from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerollm.tokenizer import bpe_reference as ref
from zerollm.tokenizer.base import StreamDecoder, load_tokenizer
from zerollm.tokenizer.gpt2 import GPT2_EOT, bytes_to_unicode, load_gpt2_bpe
from zerollm.tokenizer.pretokenize import GPT2_PATTERN


@pytest.fixture(scope="module")
def files(shared_data):
    d = shared_data / "gpt2_bpe"
    return d / "encoder.json", d / "vocab.bpe"


@pytest.fixture(scope="module")
def gpt2(files):
    return load_gpt2_bpe(*files)


@pytest.fixture(scope="module")
def hf(files):
    """HF `tokenizers` GPT-2 BPE from the same files: BPE model + ByteLevel pre-tokenizer/decoder."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab, merges = tokenizers.models.BPE.read_file(str(files[0]), str(files[1]))
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    return tok


@pytest.fixture(scope="module")
def hf_fast(files):
    transformers = pytest.importorskip("transformers")
    try:  # transformers >= 5 takes the files as vocab=/merges= (vocab_file= is silently ignored there)
        tok = transformers.GPT2TokenizerFast(vocab=str(files[0]), merges=str(files[1]))
    except TypeError:
        tok = transformers.GPT2TokenizerFast(vocab_file=str(files[0]), merges_file=str(files[1]))
    assert len(tok) == 50257, "GPT2TokenizerFast did not load the vocabulary files"
    return tok


@pytest.fixture(scope="module")
def shakespeare(shared_data):
    return (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def aozora(shared_data):
    return (shared_data / "aozora" / "752_ruby_2438.txt").read_bytes().decode("utf-8")  # keeps CRLF


def test_vocab_and_specials(gpt2):
    assert gpt2.vocab_size == 50257 and gpt2.num_merges == 50000
    assert gpt2.special_tokens == {GPT2_EOT: 50256}
    assert (gpt2.bos_id, gpt2.eos_id, gpt2.pad_id) == (50256, 50256, None)
    assert gpt2.pattern == GPT2_PATTERN
    assert gpt2.token_bytes(0) == b"!" and gpt2.token_bytes(256) == b" t"  # byte order, then merge 1
    assert gpt2.encode("Hello world, it's me.") == [15496, 995, 11, 340, 338, 502, 13]
    assert gpt2.encode("a<|endoftext|>", allowed_special="all") == [64, 50256]
    assert 50256 not in gpt2.encode("a<|endoftext|>")
    assert sorted(bytes_to_unicode()) == list(range(256)) and bytes_to_unicode()[32] == "Ġ"


def test_ranks_equal_tiktoken_loader(gpt2, files, monkeypatch):
    import tiktoken.load

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files directly, no cache writes
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(files[1]),
                                                          encoder_json_file=str(files[0]))
    assert ranks == gpt2.mergeable_ranks


def test_same_ids_as_hf_tokenizers(gpt2, hf, shakespeare, aozora):
    for text in (shakespeare, aozora):
        ids = gpt2.encode(text)
        assert ids == hf.encode(text).ids
        assert gpt2.decode(ids) == text == hf.decode(ids)
    paragraphs = shakespeare.split("\n\n")[:500] + aozora.split("\r\n")[:300]
    assert gpt2.encode_batch(paragraphs, num_threads=2) == [e.ids for e in hf.encode_batch(paragraphs)]


def test_same_ids_as_transformers(gpt2, hf_fast, shakespeare, aozora):
    for text in (shakespeare[:300_000], aozora[:100_000]):
        assert gpt2.encode(text) == hf_fast(text)["input_ids"]


@settings(derandomize=True, database=None, deadline=None, max_examples=150)
@given(st.text().map(lambda s: "".join(c for c in s if unicodedata.category(c) != "Cn")))
def test_same_ids_as_hf_on_any_text(gpt2, hf, s):
    # Unassigned code points are dropped: each regex engine ships its own Unicode version.
    assert gpt2.encode(s) == hf.encode(s).ids == ref.encode_ordinary(s, gpt2.mergeable_ranks, GPT2_PATTERN)


def test_reference_encoder_matches(gpt2, aozora):
    text = aozora[:20_000] + " Hello   world\n\n\tit's 12345 ...!!"
    assert ref.encode_ordinary(text, gpt2.mergeable_ranks, GPT2_PATTERN) == gpt2.encode(text)


def test_save_load_and_stream(gpt2, aozora, tmp_path):
    loaded = load_tokenizer(gpt2.save(tmp_path / "gpt2"))
    assert loaded.hash == gpt2.hash and loaded.roles == {"bos": GPT2_EOT, "eos": GPT2_EOT}
    assert loaded.eos_id == 50256 and loaded.bos_id == 50256
    text = aozora[:3000]
    dec = StreamDecoder(loaded)
    assert "".join(dec.feed(i) for i in loaded.encode(text)) + dec.flush() == text


def test_bad_files_give_clear_errors(files, tmp_path):
    encoder = json.loads(files[0].read_text(encoding="utf-8"))
    encoder["Ġthe"], encoder["Ġa"] = encoder["Ġa"], encoder["Ġthe"]
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoder\.json: token 'Ġ(the|a)' has id \d+ but its rank"):
        load_gpt2_bpe(tmp_path / "encoder.json", files[1])
    lines = files[1].read_text(encoding="utf-8").split("\n")
    lines[4] = "too many parts"
    (tmp_path / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.bpe:5: expected 'left right'"):
        load_gpt2_bpe(files[0], tmp_path / "vocab.bpe")
