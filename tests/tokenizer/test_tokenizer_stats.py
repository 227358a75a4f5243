"""tokenizer stats / compare, the segmentation views, and the Aozora markup stripper."""
from __future__ import annotations

import io

import pytest

from zerollm.data.aozora import strip_aozora
from zerollm.tokenizer.bpe_sp import train_bpe_sp
from zerollm.tokenizer.stats import ansi_segmentation, segments, tokenizer_compare, tokenizer_stats
from zerollm.tokenizer.unigram import train_unigram
from zerollm.tokenizer.wordpiece import train_wordpiece

AOZORA = ("羅生門\r\n芥川龍之介\r\n\r\n-------------------------------------------------------\r\n"
          "【テキスト中に現れる記号について】\r\n《》：ルビ\r\n（例）下人《げにん》\r\n"
          "-------------------------------------------------------\r\n\r\n"
          "　ある日の暮方の事である。一人の下人《げにん》が、羅生門《らしょうもん》の下で雨やみを待っていた。\r\n"
          "　所々｜丹塗《にぬり》の剥《は》げた、大きな円柱に［＃「てへん＋丑」、第4水準2-12-93］とまっている。\r\n"
          "［＃地から１字上げ］（大正四年九月）\r\n\r\n\r\n底本：「芥川龍之介全集1」ちくま文庫\r\n入力：平山誠\r\n")

TRAIN = ["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 20,
         "The quick brown fox jumps over the lazy dog. " * 30 + "\nある日の暮方の事である。" * 10]


def test_strip_aozora():
    text = strip_aozora(AOZORA)
    assert text.startswith("　ある日の暮方の事である。一人の下人が、羅生門の下で")
    assert "所々丹塗の剥げた、大きな円柱にとまっている。" in text
    for mark in ("《", "》", "｜", "［＃", "底本", "\r", "-----", "芥川龍之介", "入力"):
        assert mark not in text
    assert text.endswith("（大正四年九月）\n")
    assert strip_aozora("plain text\n") == "plain text\n"  # no header: body as is


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("toks")
    for name, make in (("unigram", lambda: train_unigram(TRAIN, 330)),
                       ("bpe_sp", lambda: train_bpe_sp(TRAIN, 330)),
                       ("wordpiece", lambda: train_wordpiece(TRAIN, 120))):
        make().save(d / name)
    return d


def test_stats_numbers(tok_dirs, tmp_path):
    f = tmp_path / "held.txt"
    f.write_text("吾輩は猫である。The lazy dog.\n名前はまだ無い。\n", encoding="utf-8")
    buf = io.StringIO()
    s = tokenizer_stats(tok_dirs / "unigram", [f], out=buf)
    text = f.read_text(encoding="utf-8")
    assert s["chars"] == len(text) and s["bytes"] == len(text.encode())
    assert s["tokens_per_char"] == pytest.approx(s["tokens"] / s["chars"])
    assert s["tokens_per_byte"] == pytest.approx(s["tokens"] / s["bytes"])
    assert 0 < s["vocab_used"] <= s["vocab_size"] and s["unk_rate"] == 0.0
    counts = [c for _, _, c in s["top_tokens"]]
    assert counts == sorted(counts, reverse=True) and sum(counts) <= s["tokens"]
    assert "".join(s["segmentation"]).strip() == text[:300].strip()
    assert "tokens/char" in buf.getvalue() and s["invalid_utf8"] == 0


def test_compare_and_html(tok_dirs, tmp_path):
    f = tmp_path / "held.txt"
    f.write_text("<script>alert(1)</script> 吾輩は猫である。\n", encoding="utf-8")
    html_path = tmp_path / "cmp.html"
    r = tokenizer_compare([tok_dirs / n for n in ("unigram", "bpe_sp", "wordpiece")], [f],
                          html_out=html_path, out=io.StringIO())
    assert len(r["tokenizers"]) == 3
    assert {s["algorithm"] for s in r["tokenizers"].values()} == {"unigram", "bpe_sp", "wordpiece"}
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<table>" in page and "<span style=" in page
    assert "<script>" not in page and "&lt;" in page  # the text is escaped


def test_invalid_utf8_and_empty_files(tok_dirs, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes("吾輩は".encode() + b"\xff\xfe" + "猫である".encode() + b"\xe3\x81")
    s = tokenizer_stats(tok_dirs / "bpe_sp", [f], print_report=False)
    assert s["invalid_utf8"] == 3 and s["tokens"] > 0
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no text"):
        tokenizer_stats(tok_dirs / "bpe_sp", [empty], print_report=False)
    with pytest.raises(FileNotFoundError):
        tokenizer_stats(tmp_path / "missing", [f], print_report=False)


def test_segmentation_views(tok_dirs):
    from zerollm.tokenizer.stats import load_any

    tok = load_any(tok_dirs / "unigram")
    text = "吾輩は猫である。🦜"  # the parrot is not in the vocab: byte pieces, grouped into one segment
    segs = segments(tok, text)
    assert "".join(s for s, _ in segs).lstrip() == text
    assert sum(len(ids) for _, ids in segs) == len(tok.encode(text))
    assert segs[-1][0] == "🦜" and len(segs[-1][1]) == 4
    colored = ansi_segmentation(segs)
    assert colored.count("\x1b[0m") == len(segs) and "\x1b[30;48;5;" in colored


def test_load_tokenizer_and_data_prepare(tok_dirs, tmp_path):
    """Every algorithm loads through the shared registry and shards with `data prepare` unchanged."""
    import numpy as np

    from zerollm.data.prepare import data_prepare
    from zerollm.tokenizer.base import load_tokenizer

    src = tmp_path / "docs.txt"
    src.write_text("吾輩は猫である。\n\nThe lazy dog.\n", encoding="utf-8")
    for name in ("unigram", "bpe_sp", "wordpiece"):
        tok = load_tokenizer(tok_dirs / name)
        assert tok.algorithm == name and tok.eos_id is not None
        m = data_prepare([str(src)], tok_dirs / name, tmp_path / f"shards_{name}", val_fraction=0.0)
        assert m["tokenizer_hash"] == tok.hash
        ids = np.fromfile(tmp_path / f"shards_{name}" / m["train"][0]["file"], dtype=m["dtype"])
        assert tok.eos_id in ids.tolist() and ids.max() < tok.vocab_size
