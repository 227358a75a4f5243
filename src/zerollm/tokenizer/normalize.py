"""BERT-style text normalization and pre-tokenization (Devlin et al. 2019; the rules of Hugging Face
`tokenizers`' BertNormalizer and BertPreTokenizer, which `BertTokenizerFast` uses).

normalize, in this order:
1. clean text: drop NUL, U+FFFD and control characters (Unicode category C*, except tab/newline/CR);
   turn every whitespace character (Unicode White_Space) into a plain space;
2. CJK: put spaces around every CJK *ideograph* (the "Chinese character" blocks: kanji, hanzi).
   Hiragana, katakana and hangul are not ideographs, so a run of kana stays one word;
3. strip accents (default: when lowercasing): NFD, then drop combining marks (category Mn) - "Café" -> "Cafe";
4. lowercase.

pre_tokenize: split on whitespace, and make every punctuation character (Unicode P*, or ASCII
punctuation such as `$+<=>^|~`) a word of its own.
"""
from __future__ import annotations

import unicodedata

import regex

# the ranges BERT calls "Chinese characters" (CJK Unified Ideographs + extensions + compatibility).
# Extension E starts at U+2B820, but Hugging Face `tokenizers` (whose output we match) has 0x2B920.
_CJK_RANGES = (r"\u4E00-\u9FFF\u3400-\u4DBF\U00020000-\U0002A6DF\U0002A700-\U0002B73F"
               r"\U0002B740-\U0002B81F\U0002B920-\U0002CEAF\uF900-\uFAFF\U0002F800-\U0002FA1F")
_CONTROL = regex.compile(r"[\x00\uFFFD]|[\p{C}--[\t\n\r]]", regex.V1)
_WHITESPACE = regex.compile(r"[\t\n\r\p{White_Space}]")
_CJK = regex.compile(f"[{_CJK_RANGES}]")
_MARKS = regex.compile(r"\p{Mn}")
_PUNCT = r"\p{P}!-/:-@\[-`{-~"
_WORDS = regex.compile(rf"[^\s{_PUNCT}]+|[{_PUNCT}]")


def is_cjk(ch: str) -> bool:
    return _CJK.match(ch) is not None


def bert_normalize(text: str, lowercase: bool = True, strip_accents: bool | None = None,
                   clean_text: bool = True, handle_chinese_chars: bool = True) -> str:
    """BertNormalizer. `strip_accents=None` means "same as lowercase", as in BERT."""
    if clean_text:
        text = _CONTROL.sub("", text)
        text = _WHITESPACE.sub(" ", text)
    if handle_chinese_chars:
        text = _CJK.sub(r" \g<0> ", text)
    if strip_accents is None:
        strip_accents = lowercase
    if strip_accents and not text.isascii():
        text = _MARKS.sub("", unicodedata.normalize("NFD", text))
    if lowercase:
        text = text.lower()
    return text


def bert_pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: whitespace-separated words, each punctuation character its own word."""
    return _WORDS.findall(text)
