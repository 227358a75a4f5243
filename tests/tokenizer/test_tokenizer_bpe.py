"""Byte-level BPE: round trips, reference encoder == tiktoken path, trainer == reference trainer, trainer
properties, save/load.

Everything here is deterministic: fixed corpora, and hypothesis runs derandomized."""
from __future__ import annotations

import base64
import json
import unicodedata
from pathlib import Path

import pydoc_data.topics
import pytest
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerollm.tokenizer import bpe_reference as ref
from zerollm.tokenizer.base import (ALGORITHMS, StreamDecoder, Tokenizer, default_special_tokens, load_tokenizer,
                                    register_algorithm)
from zerollm.tokenizer.bpe import BPETokenizer, count_chunks, learn_merges, train_bpe
from zerollm.tokenizer.pretokenize import GPT2_PATTERN, GPT4_PATTERN, pretokenize

HYP = settings(derandomize=True, database=None, deadline=None, max_examples=150,
               suppress_health_check=[HealthCheck.too_slow])

# ---- corpora ----------------------------------------------------------------------------------------
PYDOC = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
JA_FALLBACK = "吾輩は猫である。名前はまだ無い。\r\nどこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で泣いていた事だけは記憶している。\r\n"


def read_crlf(path: Path) -> str:
    """Read UTF-8 keeping CRLF line ends (Path.read_text would turn them into LF)."""
    return path.read_bytes().decode("utf-8")


@pytest.fixture(scope="module")
def ja_text(shared_data) -> str:
    return read_crlf(shared_data / "aozora" / "773_ruby_5968.txt")[:60_000]


@pytest.fixture(scope="module")
def shakespeare(shared_data) -> str:
    return (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    """Trained on real text that is always available (CPython docs) plus Japanese; GPT-4 pattern."""
    return train_bpe([PYDOC[:150_000], JA_FALLBACK * 20], vocab_size=1200, show_progress=False)


@pytest.fixture(scope="module")
def tok_mixed(ja_text) -> BPETokenizer:
    """English + Japanese (CRLF) with enough merges that Japanese characters become multi-byte tokens."""
    return train_bpe([PYDOC[:100_000], ja_text], vocab_size=1500, show_progress=False)


@pytest.fixture(scope="module")
def tok_gpt2(ja_text) -> BPETokenizer:
    return train_bpe([PYDOC[:100_000], ja_text], vocab_size=900, pattern="gpt2", show_progress=False)


# ---- hypothesis strategies --------------------------------------------------------------------------
def _chars(lo, hi):
    return st.characters(min_codepoint=lo, max_codepoint=hi, exclude_categories=("Cs",))


SPECIALS = st.sampled_from(["<|eos|>", "<|bos|>", "<|im_start|>", "<|reserved_4|>", "<|", "|>", "<|eos", "'s"])
PIECES = st.one_of(
    st.characters(),                                   # anything (no lone surrogates)
    _chars(0x20, 0x7E),                                # ASCII
    _chars(0x3040, 0x30FF), _chars(0x4E00, 0x9FFF),    # kana, kanji
    _chars(0x1F300, 0x1FAFF),                          # emoji
    st.sampled_from(["👍🏽", "👨‍👩‍👧", "🇯🇵", "é", "ﾊﾟ"]),   # modifiers, ZWJ sequences, flags, decomposed
    _chars(0x0300, 0x036F),                            # combining marks
    _chars(0x00, 0x1F), _chars(0x7F, 0x9F),            # control characters
    st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\u3000", "\u00a0", "\u2028", "\x0b", "\x1c"]),
    _chars(0x30, 0x39), SPECIALS,
)
TEXT = st.one_of(st.text(), st.lists(PIECES, max_size=50).map("".join))


def assigned_only(s: str) -> str:
    """Drop code points unassigned in Python's Unicode database. Python's `regex` and tiktoken's Rust regex
    ship different Unicode versions, so they may classify characters added in newer versions
    differently (\\p{L} vs not); every assigned character is classified the same (checked exhaustively
    while writing this test: the only disagreements were 4657 code points of category Cn)."""
    return "".join(c for c in s if unicodedata.category(c) != "Cn")


# ---- round trips ------------------------------------------------------------------------------------
@HYP
@given(TEXT)
def test_roundtrip_any_text(tok, s):
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode(s, allowed_special="all")) == s
    assert tok.decode_bytes(tok.encode(s)) == s.encode("utf-8")


@HYP
@given(TEXT)
def test_stream_decoder_yields_the_text_piece_by_piece(tok, s):
    dec = StreamDecoder(tok)
    pieces = [dec.feed(i) for i in tok.encode(s)]
    assert "".join(pieces) + dec.flush() == s
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in s


def test_stream_decoder_holds_back_partial_characters(tok):
    dec = StreamDecoder(tok)
    emoji = "🎉".encode("utf-8")
    byte_ids = [tok.mergeable_ranks[bytes([b])] for b in emoji]
    assert [dec.feed(i) for i in byte_ids] == ["", "", "", "🎉"]
    assert dec.feed(tok.mergeable_ranks[b"\xe3"]) == "" and dec.pending == b"\xe3"
    assert dec.flush() == "\ufffd" and dec.pending == b""
    assert dec.feed(tok.mergeable_ranks[b"\xff"]) == "\ufffd"  # never valid: emitted right away


def test_specials(tok):
    specials = default_special_tokens()
    assert len(specials) == 16 and specials[:3] == ["<|bos|>", "<|eos|>", "<|pad|>"]
    assert specials[10:12] == ["<|/think|>", "<|reserved_0|>"]
    n = len(tok.mergeable_ranks)
    assert tok.special_tokens == {s: n + i for i, s in enumerate(specials)}
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (n, n + 1, n + 2)
    text = "a<|eos|>b<|im_start|>"
    assert tok.eos_id not in tok.encode(text)                                  # "none": plain text
    assert tok.encode(text, allowed_special="all")[-1] == tok.special_tokens["<|im_start|>"]
    only_eos = tok.encode(text, allowed_special={"<|eos|>"})
    assert tok.eos_id in only_eos and tok.special_tokens["<|im_start|>"] not in only_eos
    assert tok.decode(only_eos) == text and tok.token_bytes(tok.eos_id) == b"<|eos|>"
    with pytest.raises(ValueError, match="unknown special"):
        tok.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode(text, allowed_special="some")


def test_encode_batch_matches_encode(tok):
    texts = [PYDOC[i:i + 3000] + "<|eos|>" for i in range(0, 60_000, 3000)] + ["", JA_FALLBACK]
    for allowed in ("none", "all", {"<|eos|>"}):
        want = [tok.encode(t, allowed_special=allowed) for t in texts]
        for threads in (1, 2):
            assert tok.encode_batch(texts, allowed_special=allowed, num_threads=threads) == want


def test_decode_errors(tok):
    assert tok.decode([tok.mergeable_ranks[b"\xe3"], tok.mergeable_ranks[b"a"]]) == "\ufffda"
    with pytest.raises(ValueError, match=str(tok.vocab_size)):
        tok.decode([0, tok.vocab_size])
    with pytest.raises(ValueError, match="-1"):
        tok.decode([-1])
    with pytest.raises(ValueError):
        tok.token_bytes(tok.vocab_size)


# ---- reference encoder == tiktoken ------------------------------------------------------------------
def _same_as_reference(t: BPETokenizer, text: str, allowed="none"):
    got = t.encode(text, allowed_special=allowed)
    want = ref.encode(text, t.mergeable_ranks, t.pattern, t.special_tokens, allowed)
    assert got == want


def test_reference_matches_tiktoken_on_shakespeare(tok_mixed, tok_gpt2, shakespeare):
    for t in (tok_mixed, tok_gpt2):
        _same_as_reference(t, shakespeare)


def test_reference_matches_tiktoken_on_aozora(tok_mixed, tok_gpt2, shared_data):
    text = read_crlf(shared_data / "aozora" / "127_ruby_150.txt") + read_crlf(
        shared_data / "aozora" / "789_ruby_5639.txt")[:10_000]
    assert "\r\n" in text
    for t in (tok_mixed, tok_gpt2):
        _same_as_reference(t, text)
        _same_as_reference(t, text[:2000] + "<|eos|>" + text[-2000:] + "<|im_start|>", allowed="all")


@HYP
@given(TEXT.map(assigned_only))
def test_reference_matches_tiktoken_on_any_text(tok_mixed, tok_gpt2, s):
    for t in (tok_mixed, tok_gpt2):
        _same_as_reference(t, s)
        _same_as_reference(t, s, allowed="all")


@HYP
@given(TEXT)
def test_pretokenize_covers_text(s):
    for pattern in (GPT2_PATTERN, GPT4_PATTERN):
        assert "".join(pretokenize(s, pattern)) == s


def test_gpt2_pattern_equals_original_release_form(shakespeare, ja_text):
    original = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    text = shakespeare[:100_000] + ja_text[:20_000] + PYDOC[:50_000] + "  \n\n  x \t\n  "
    assert pretokenize(text, GPT2_PATTERN) == pretokenize(text, original)


# ---- trainer == reference trainer ------------------------------------------------------------------
def _learned(ranks: dict[bytes, int]) -> list[bytes]:
    """The learned tokens (past the 256 bytes), in rank order."""
    return sorted((t for t, r in ranks.items() if r >= 256), key=ranks.__getitem__)


def _same_as_reference_trainer(texts, vocab_size, pattern="gpt4", min_frequency=2) -> dict[bytes, int]:
    fast = train_bpe(texts, vocab_size=vocab_size, pattern=pattern, special_tokens=[], min_frequency=min_frequency,
                     show_progress=False).mergeable_ranks
    assert fast == ref.train_bpe_reference(texts, vocab_size, pattern=pattern, min_frequency=min_frequency)
    return fast


def test_trainer_equals_reference_on_shakespeare(shakespeare):
    ranks = _same_as_reference_trainer([shakespeare[:100_000]], 500)
    assert len(ranks) == 500 and b" the" in ranks


def test_trainer_equals_reference_on_japanese(ja_text):
    ranks = _same_as_reference_trainer([ja_text[:20_000]], 400, pattern="gpt2")
    # byte-level: some learned tokens are pieces of a character (not valid UTF-8 on their own)
    assert any(t.decode("utf-8", "replace") != t.decode("utf-8", "ignore") for t in _learned(ranks))


def test_trainer_ties_take_the_smallest_pair():
    # every pair occurs once: (0x20, 0x63) " c" < (0x61, 0x62) "ab" < (256, 0x64) " c"+"d"
    ranks = _same_as_reference_trainer(["ab cd"], 256 + 3, min_frequency=1)
    assert _learned(ranks) == [b" c", b"ab", b" cd"]


@pytest.mark.parametrize("counts,want", [
    ({b"aaaa": 1}, [b"aa", b"aaaa"]),          # (a, a) occurs 3 times (overlapping); merged left to right
    ({b"aaa": 5}, [b"aa", b"aaa"]),            # "aaa" -> "aa" + "a", not "a" + "aa"
    ({b"abab": 2, b"ba": 3}, [b"ba", b"aba"]),  # (b, a) 2+3 beats (a, b) 4; then (a, ba) ties (ba, b): 97 < 256
])
def test_trainer_repeated_characters(counts, want):
    vocab, merges = learn_merges(counts, 2, min_frequency=1)
    assert (vocab, merges) == ref.learn_merges_reference(counts, 2, min_frequency=1)
    assert vocab[256:] == want


def test_trainer_equals_reference_on_mixed_text():
    text = PYDOC[:8_000] + JA_FALLBACK * 3 + "aaaaaaa aaaa abababab ...... 1111111 ーーーー 👍🏽👍🏽 é\n\n\n"
    counts = count_chunks([text], GPT4_PATTERN)
    for min_frequency in (1, 3):
        fast = learn_merges(counts, 300, min_frequency=min_frequency)
        assert fast == ref.learn_merges_reference(counts, 300, min_frequency=min_frequency)
    assert len(fast[1]) > 100


@settings(derandomize=True, database=None, deadline=None, max_examples=120)
@given(st.dictionaries(st.binary(min_size=1, max_size=12).map(lambda b: bytes(x % 3 + 97 for x in b)),
                       st.integers(1, 20), max_size=12),
       st.integers(1, 3))
def test_trainer_equals_reference_on_random_chunks(counts, min_frequency):
    # A 3-letter alphabet forces overlapping runs ("aaaa"), adjacent repeats ("abab") and many ties.
    assert learn_merges(counts, 40, min_frequency) == ref.learn_merges_reference(counts, 40, min_frequency)


def test_exact_vocab_size_and_determinism():
    texts = [PYDOC[:80_000]]
    a = train_bpe(texts, vocab_size=700, show_progress=False)
    b = train_bpe(texts, vocab_size=700, show_progress=False)
    assert a.vocab_size == 700 and len(a.mergeable_ranks) == 700 - 16
    assert sorted(a.mergeable_ranks.values()) == list(range(684))
    assert a.hash == b.hash and a.mergeable_ranks == b.mergeable_ranks
    # learned tokens really are merges of two earlier tokens, in rank order
    inv = {r: t for t, r in a.mergeable_ranks.items()}
    for r in range(256, 684):
        assert any(inv[r][:k] in a.mergeable_ranks and a.mergeable_ranks[inv[r][:k]] < r
                   and a.mergeable_ranks.get(inv[r][k:], r) < r for k in range(1, len(inv[r])))


def test_custom_specials_and_minimum_vocab():
    t = train_bpe([PYDOC[:20_000]], vocab_size=256 + 50 + 2, special_tokens=["<|eos|>", "<|sep|>"],
                  show_progress=False)
    assert t.special_tokens == {"<|eos|>": 306, "<|sep|>": 307} and t.eos_id == 306 and t.bos_id is None
    t0 = train_bpe(["hello"], vocab_size=256 + 16, show_progress=False)  # bytes + specials only
    assert t0.vocab_size == 272 and t0.num_merges == 0 and t0.encode("hi") == [104, 105]


def test_trainer_errors(tmp_path):
    with pytest.raises(ValueError, match=r"at least 256 byte tokens \+ 16 special tokens = 272"):
        train_bpe(["hello world"], vocab_size=271, show_progress=False)
    with pytest.raises(ValueError, match="at most 131072"):
        train_bpe(["hello world"], vocab_size=2 ** 17 + 1, show_progress=False)
    for empty in ([], [""], ["", ""]):
        with pytest.raises(ValueError, match="empty training corpus"):
            train_bpe(empty, vocab_size=1000, show_progress=False)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty training corpus"):
        train_bpe(files=[tmp_path / "empty.txt"], vocab_size=1000, show_progress=False)
    with pytest.raises(ValueError, match="distinct"):
        train_bpe(["x"], vocab_size=1000, special_tokens=["<|a|>", "<|a|>"], show_progress=False)
    with pytest.raises(ValueError, match="invalid pre-tokenization pattern"):
        train_bpe(["x"], vocab_size=1000, pattern="(unclosed", show_progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond line\nthird \xff line\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: invalid UTF-8"):
        train_bpe(files=[bad], vocab_size=1000, show_progress=False)
    with pytest.warns(UserWarning, match="min_frequency"):
        small = train_bpe(["abc abc"], vocab_size=1000, show_progress=False)
    assert small.vocab_size < 1000


def test_train_from_files_equals_texts(tmp_path):
    text = PYDOC[:40_000]
    (tmp_path / "a.txt").write_text(text[:25_000], encoding="utf-8")
    (tmp_path / "b.txt").write_text(text[25_000:], encoding="utf-8")
    from_files = train_bpe(files=[tmp_path / "a.txt", tmp_path / "b.txt"], vocab_size=600, show_progress=False)
    from_texts = train_bpe([text[:25_000], text[25_000:]], vocab_size=600, show_progress=False)
    assert from_files.hash == from_texts.hash


def test_file_blocks_cut_at_chunk_boundaries(tmp_path):
    from zerollm.tokenizer.bpe import _read_text_file

    text = (JA_FALLBACK + "  indented line\r\n" + PYDOC[:3000] + "\n\n\n x\n 12\r\n\r\nab") * 5
    (tmp_path / "f.txt").write_bytes(text.encode("utf-8"))
    blocks = list(_read_text_file(tmp_path / "f.txt", block_bytes=700))
    assert len(blocks) > 10 and "".join(blocks) == text
    assert all(b[-1].isalnum() and nxt[0] in "\r\n" for b, nxt in zip(blocks, blocks[1:]))
    for pattern in (GPT2_PATTERN, GPT4_PATTERN):
        assert count_chunks(blocks, pattern) == count_chunks([text], pattern)
    (tmp_path / "g.txt").write_bytes(text.encode("utf-8") + b"ok\nbad \xe3\x81 byte\n")
    with pytest.raises(ValueError, match=rf"g\.txt:{text.count(chr(10)) + 2}: invalid UTF-8"):
        list(_read_text_file(tmp_path / "g.txt", block_bytes=700))


def test_count_chunks_with_worker_processes():
    texts = [PYDOC[i:i + 5000] for i in range(0, 100_000, 5000)]
    one = count_chunks(texts, GPT4_PATTERN, num_workers=1)
    two = count_chunks(texts, GPT4_PATTERN, num_workers=2, batch_chars=20_000)
    assert one == two and sum(len(c) * n for c, n in one.items()) == len("".join(texts).encode())


# ---- save / load ------------------------------------------------------------------------------------
def test_save_load_roundtrip(tok, tmp_path):
    d = tok.save(tmp_path / "tok")
    manifest = json.loads((d / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("kind", "algorithm", "pattern", "vocab_size", "hash")} == {
        "kind": "tokenizer", "algorithm": "bpe", "pattern": GPT4_PATTERN, "vocab_size": tok.vocab_size,
        "hash": tok.hash}
    assert manifest["special_tokens"] == tok.special_tokens
    loaded = load_tokenizer(d)
    assert isinstance(loaded, BPETokenizer) and loaded.hash == tok.hash
    assert loaded.mergeable_ranks == tok.mergeable_ranks and loaded.special_tokens == tok.special_tokens
    assert loaded.encode(PYDOC[:5000]) == tok.encode(PYDOC[:5000])
    # tiktoken reads our ranks file as its own format
    assert tiktoken.load.load_tiktoken_bpe(str(d / "ranks.tiktoken")) == tok.mergeable_ranks
    # saving again (overwriting) gives identical files and hash
    ranks_bytes = (d / "ranks.tiktoken").read_bytes()
    loaded.save(d)
    assert (d / "ranks.tiktoken").read_bytes() == ranks_bytes and load_tokenizer(d).hash == tok.hash
    # a checkpoint-like dir holding tokenizer/
    tok.save(tmp_path / "ckpt" / "tokenizer")
    assert load_tokenizer(tmp_path / "ckpt").hash == tok.hash


def _corrupt(tok, tmp_path, lineno, new_line):
    d = tok.save(tmp_path / f"bad{lineno}")
    lines = (d / "ranks.tiktoken").read_bytes().split(b"\n")
    lines[lineno - 1] = new_line
    (d / "ranks.tiktoken").write_bytes(b"\n".join(lines))
    return d


@pytest.mark.parametrize("lineno,new_line,message", [
    (7, b"not-base64! 6", r"ranks\.tiktoken:7: invalid base64"),
    (300, b"IGE= x12", r"ranks\.tiktoken:300: rank must be a non-negative integer"),
    (301, b"IGE=", r"ranks\.tiktoken:301: expected '<base64 token> <rank>'"),
    (302, base64.b64encode(b"\x00") + b" 301", r"ranks\.tiktoken:302: duplicate token"),
    (303, base64.b64encode(b"zzqq") + b" 5", r"ranks\.tiktoken:303: duplicate rank 5 \(also on line 6\)"),
])
def test_corrupt_ranks_file_names_file_and_line(tok, tmp_path, lineno, new_line, message):
    d = _corrupt(tok, tmp_path, lineno, new_line)
    with pytest.raises(ValueError, match=message):
        load_tokenizer(d)


def test_load_validation(tok, tmp_path):
    d = _corrupt(tok, tmp_path, 400, base64.b64encode(b"zzqq") + b" 399")  # valid line, different token
    with pytest.raises(ValueError, match="hash mismatch"):
        load_tokenizer(d)
    d = tok.save(tmp_path / "m")
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "vocab_size": 5}))
    with pytest.raises(ValueError, match="vocab_size"):
        load_tokenizer(d)
    (d / "manifest.json").write_text(json.dumps({**m, "algorithm": "nope"}))
    with pytest.raises(ValueError, match="unknown tokenizer algorithm 'nope'"):
        load_tokenizer(d)
    (d / "ranks.tiktoken").unlink()
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FileNotFoundError, match="ranks.tiktoken"):
        load_tokenizer(d)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_tokenizer(tmp_path / "nowhere")


def test_registry_dispatch(tmp_path, monkeypatch):
    class Dummy(BPETokenizer):
        algorithm = "dummy-test"

    monkeypatch.setitem(ALGORITHMS, "dummy-test", None)  # the registry loses the entry again after the test
    register_algorithm("dummy-test", Dummy)
    ranks = {bytes([i]): i for i in range(256)}
    d = Dummy(ranks, special_tokens={"<|eos|>": 256}).save(tmp_path / "d")
    assert json.loads((d / "manifest.json").read_text())["algorithm"] == "dummy-test"
    loaded = load_tokenizer(d)
    assert type(loaded) is Dummy and loaded.eos_id == 256
    with pytest.raises(ValueError, match="algorithm is 'dummy-test', expected 'bpe'"):
        BPETokenizer.load(d)
    assert isinstance(ALGORITHMS["bpe"], (str, type)) and issubclass(BPETokenizer, Tokenizer)
