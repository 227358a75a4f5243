"""Tokenizer benchmark: zerollm's Unigram, SentencePiece-mode BPE and WordPiece beside the libraries.

    python bench/bench_tokenizers.py                 # quality + speed, vocab 8000 (~3-5 minutes on 2 cores)
    python bench/bench_tokenizers.py --only quality  # or --only speed
    python bench/bench_tokenizers.py --json out.json

Quality: train on 10 Aozora Bunko novels, hold out two (こころ 773, 蜘蛛の糸 92), tokens per character on
the held-out lines at equal vocabulary size:
  * our Unigram vs `sentencepiece` Unigram (both: identity normalization, spaces kept, byte fallback,
    character_coverage 0.9995, so both models have the same 259 meta pieces);
  * our SentencePiece-mode BPE without the script rule vs `tokenizers` BPE with a Metaspace pre-tokenizer
    (vocab = our learned pieces, 8000 - 259, since it has no byte pieces), and with SentencePiece's
    script rule (the default) vs `sentencepiece` BPE (and `tokenizers` + UnicodeScripts, for reference);
  * zerollm's byte-level BPE (tokenizer/bpe.py, when present) vs `tokenizers` byte-level BPE.
Speed: one corpus of Python docs (zerollm's default corpus: pydoc topics + stdlib docstrings) + tiny
Shakespeare + the stripped Aozora texts (~7 MB): Unigram training time at vocab 8000 (ours vs
`sentencepiece`, 2 threads), and encoding MB/s of every tokenizer next to its library counterpart
(single process, line by line; the libraries' own batch/thread paths noted separately).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine  # noqa: E402

from zerollm.data.aozora import read_aozora  # noqa: E402

HELD_OUT = ("773_", "92_")


def aozora_split():
    files = sorted((SHARED / "aozora").glob("*.txt"))
    train = [read_aozora(f) for f in files if not f.name.startswith(HELD_OUT)]
    held = "".join(read_aozora(f) for f in files if f.name.startswith(HELD_OUT))
    return train, [ln for ln in held.split("\n") if ln.strip()]


def tokens_per_char(encode, lines) -> float:
    return sum(len(encode(ln)) for ln in lines) / sum(len(ln) for ln in lines)


def sp_train(text_file: Path, prefix: Path, vocab: int, model_type: str) -> float:
    import sentencepiece as spm

    t = time.perf_counter()
    spm.SentencePieceTrainer.train(input=str(text_file), model_prefix=str(prefix), vocab_size=vocab,
                                   model_type=model_type, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, byte_fallback=True,
                                   character_coverage=0.9995, max_sentence_length=1 << 20, num_threads=2,
                                   minloglevel=2)
    return time.perf_counter() - t


def hf_bpe(lines_or_texts, vocab: int, scripts: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    meta = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.UnicodeScripts(), meta]) if scripts else meta)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>"], show_progress=False)
    t = time.perf_counter()
    tok.train_from_iterator(lines_or_texts, trainer)
    return tok, time.perf_counter() - t


def quality(vocab: int, tmp: Path) -> dict:
    from zerollm.tokenizer.bpe_sp import train_bpe_sp
    from zerollm.tokenizer.unigram import train_unigram

    train, held = aozora_split()
    train_lines = [ln for doc in train for ln in doc.split("\n") if ln.strip()]
    (tmp / "aozora_train.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    out = {"held_out_chars": sum(map(len, held)), "vocab": vocab}
    import sentencepiece as spm

    t_sp = sp_train(tmp / "aozora_train.txt", tmp / "sp_uni", vocab, "unigram")
    sp = spm.SentencePieceProcessor(model_file=str(tmp / "sp_uni.model"))
    t = time.perf_counter()
    uni = train_unigram(train, vocab)
    t_ours = time.perf_counter() - t
    out["unigram"] = {"ours": tokens_per_char(uni.encode, held), "sentencepiece": tokens_per_char(sp.encode, held),
                      "train_s_ours": t_ours, "train_s_sentencepiece": t_sp}
    sp_train(tmp / "aozora_train.txt", tmp / "sp_bpe", vocab, "bpe")
    spb = spm.SentencePieceProcessor(model_file=str(tmp / "sp_bpe.model"))
    t = time.perf_counter()
    bpe = train_bpe_sp(train, vocab)
    t_bpe = time.perf_counter() - t
    t = time.perf_counter()
    bpe_ns = train_bpe_sp(train, vocab, split_by_unicode_script=False)
    t_bpe_ns = time.perf_counter() - t
    learned = vocab - 259
    hf_plain, t_hf = hf_bpe(train_lines, learned, scripts=False)
    hf_scripts, _ = hf_bpe(train_lines, learned, scripts=True)
    out["bpe_sp"] = {"ours_script_split": tokens_per_char(bpe.encode, held), "train_s_ours_script_split": t_bpe,
                     "ours_no_script_split": tokens_per_char(bpe_ns.encode, held),
                     "train_s_ours_no_script_split": t_bpe_ns, "train_s_tokenizers": t_hf,
                     "sentencepiece_bpe": tokens_per_char(spb.encode, held),
                     "tokenizers_metaspace": tokens_per_char(lambda s: hf_plain.encode(s).ids, held),
                     "tokenizers_metaspace_unicodescripts": tokens_per_char(lambda s: hf_scripts.encode(s).ids,
                                                                            held)}
    try:  # the byte-level BPE of tokenizer/bpe.py, if it is there
        from zerollm.tokenizer.bpe import train_bpe
    except ImportError:
        out["bpe_bytelevel"] = "zerollm.tokenizer.bpe not available"
    else:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        ours_bl = train_bpe(train, vocab_size=vocab)
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.train_from_iterator(train, trainers.BpeTrainer(
            vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        out["bpe_bytelevel"] = {"ours": tokens_per_char(ours_bl.encode, held),
                                "tokenizers": tokens_per_char(lambda s: hf.encode(s).ids, held)}
    return out


def speed_corpus() -> list[str]:
    from zerollm.data.corpus import default_corpus_text

    docs = default_corpus_text()
    shakespeare = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    aozora = "".join(read_aozora(f) for f in sorted((SHARED / "aozora").glob("*.txt")))
    return [ln for ln in (docs + "\n" + shakespeare + "\n" + aozora).split("\n") if ln.strip()]


def mbps(encode_all, lines) -> float:
    nbytes = sum(len(ln.encode("utf-8")) for ln in lines)
    t = time.perf_counter()
    encode_all(lines)
    return nbytes / 1e6 / (time.perf_counter() - t)


def speed(vocab: int, tmp: Path) -> dict:
    import sentencepiece as spm

    from zerollm.tokenizer.bpe_sp import train_bpe_sp
    from zerollm.tokenizer.unigram import train_unigram
    from zerollm.tokenizer.wordpiece import train_wordpiece

    lines = speed_corpus()
    (tmp / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = {"corpus_mb": sum(len(ln.encode()) for ln in lines) / 1e6, "vocab": vocab}
    out["train_s"] = {"sentencepiece_unigram": sp_train(tmp / "corpus.txt", tmp / "spu", vocab, "unigram")}
    t = time.perf_counter()  # the library's own defaults (nmt_nfkc, sentences > 4192 bytes skipped)
    spm.SentencePieceTrainer.train(input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "spd"), vocab_size=vocab,
                                   model_type="unigram", num_threads=2, minloglevel=2)
    out["train_s"]["sentencepiece_unigram (library defaults)"] = time.perf_counter() - t
    t = time.perf_counter()
    uni = train_unigram(["\n".join(lines)], vocab)
    out["train_s"]["ours_unigram"] = time.perf_counter() - t
    t = time.perf_counter()
    wp = train_wordpiece(["\n".join(lines)], vocab)
    out["train_s"]["ours_wordpiece"] = time.perf_counter() - t
    t = time.perf_counter()
    bpe = train_bpe_sp(["\n".join(lines)], vocab)
    out["train_s"]["ours_bpe_sp"] = time.perf_counter() - t
    sp_train(tmp / "corpus.txt", tmp / "spb", vocab, "bpe")
    spu = spm.SentencePieceProcessor(model_file=str(tmp / "spu.model"))
    spb = spm.SentencePieceProcessor(model_file=str(tmp / "spb.model"))
    wp.save_vocab(tmp / "vocab.txt")
    import transformers

    hf_wp = (transformers.BertTokenizerFast(vocab=str(tmp / "vocab.txt"), strip_accents=False)
             if int(transformers.__version__.split(".")[0]) >= 5
             else transformers.BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"), strip_accents=False))
    backend = hf_wp.backend_tokenizer
    enc = {}
    for name, fn in [
        ("ours_unigram (cold cache)", lambda ls: [uni.encode(s) for s in ls]),
        ("ours_unigram (warm cache)", lambda ls: [uni.encode(s) for s in ls]),
        ("sentencepiece_unigram", lambda ls: [spu.encode(s) for s in ls]),
        ("ours_bpe_sp", lambda ls: [bpe.encode(s) for s in ls]),
        ("sentencepiece_bpe", lambda ls: [spb.encode(s) for s in ls]),
        ("ours_wordpiece", lambda ls: [wp.encode(s) for s in ls]),
        ("hf_wordpiece (one line at a time)", lambda ls: [backend.encode(s, add_special_tokens=False) for s in ls]),
        ("hf_wordpiece (encode_batch, 2 threads)",
         lambda ls: backend.encode_batch(ls, add_special_tokens=False)),
    ]:
        enc[name] = mbps(fn, lines)
    out["encode_mb_per_s"] = enc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--only", choices=["quality", "speed"], default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "2")
    result = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="zerollm-bench-tok-") as d:
        if args.only in (None, "quality"):
            result["quality"] = quality(args.vocab, Path(d))
            print(json.dumps(result["quality"], indent=2), flush=True)
        if args.only in (None, "speed"):
            result["speed"] = speed(args.vocab, Path(d))
            print(json.dumps(result["speed"], indent=2), flush=True)
    if "quality" in result:
        q = result["quality"]
        u, b = q["unigram"], q["bpe_sp"]
        print(f"\nUnigram tokens/char: ours {u['ours']:.4f} vs sentencepiece {u['sentencepiece']:.4f} "
              f"({100 * (u['ours'] / u['sentencepiece'] - 1):+.2f}%)")
        for ours, ref in (("ours_no_script_split", "tokenizers_metaspace"),
                          ("ours_script_split", "sentencepiece_bpe"),
                          ("ours_script_split", "tokenizers_metaspace_unicodescripts")):
            print(f"SP-mode BPE tokens/char: {ours} {b[ours]:.4f} vs {ref} {b[ref]:.4f} "
                  f"({100 * (b[ours] / b[ref] - 1):+.2f}%)")
        bl = q.get("bpe_bytelevel")
        if isinstance(bl, dict):
            print(f"byte-level BPE tokens/char: ours {bl['ours']:.4f} vs tokenizers {bl['tokenizers']:.4f} "
                  f"({100 * (bl['ours'] / bl['tokenizers'] - 1):+.2f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
