"""`zerollm translate train` / `zerollm translate` end to end on a tiny corpus: run directory, best checkpoint,
BLEU in the report, sentence and file modes; resume equals an uninterrupted run; bad input gives one-line
errors naming the file and line or the model kind, and nothing already written is lost; the test scores
go into eval.json (the report card's form)."""
import json

import pytest
import torch

from zerollm.cli import main
from zerollm.loading import load
from zerollm.model.seq2seq import Seq2Seq

EN = ["i like apples .", "he is a student .", "she likes cats .", "we are friends .", "it is cold today .",
      "i have a dog .", "they play tennis .", "you are kind ."]
JA = ["私 は りんご が 好き だ 。", "彼 は 学生 で す 。", "彼女 は 猫 が 好き だ 。", "私 達 は 友達 だ 。",
      "今日 は 寒 い 。", "私 は 犬 を 飼 っ て い る 。", "彼 ら は テニス を する 。", "あなた は 親切 だ 。"]
TINY = ["--vocab-size", "350", "train.max_minutes=0", "train.warmup_steps=2", "train.progress=false",
        "train.eval_every=4", "train.ckpt_every=4", "train.log_every=2", "model.d_model=32", "model.d_ff=64",
        "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dropout=0.0", "max_tokens=64", "dev_sentences=4",
        "test_beams=2"]


@pytest.fixture()
def corpus(tmp_path):
    for name, lines in (("train.en", EN * 4), ("train.ja", JA * 4), ("dev.en", EN[:4]), ("dev.ja", JA[:4])):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def train_args(d, out, steps):
    return ["translate", "train", "--train", str(d / "train.en"), str(d / "train.ja"), "--dev", str(d / "dev.en"),
            str(d / "dev.ja"), "--out", str(out), *TINY, f"train.steps={steps}"]


def test_train_then_translate_sentence_and_file(corpus, capsys):
    out = corpus / "run"
    assert main(train_args(corpus, out, 8) + ["--test", str(corpus / "dev.en"), str(corpus / "dev.ja")]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "dev_bleu" in report and "test, beam 2" in report and "src: i like apples ." in report
    for f in ("loss.png", "bleu.png", "cross_attention.png", "metrics.jsonl", "test.beam2.hyp"):
        assert (out / f).is_file(), f
    assert any("dev_bleu" in json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines())
    assert list((out / "best").glob("step-*/model.safetensors"))
    # eval.json (issue 15): the test scores the report states, in the eval package's form
    saved = json.loads((out / "eval.json").read_text())
    assert saved["bleu"]["n"] == 4 and set(saved["bleu"]["metrics"]) == {"greedy", "beam2"}
    for beams, label in (("beam2", "test, beam 2"), ("greedy", "test, greedy")):
        line = next(x for x in report.splitlines() if x.startswith(f"- {label}:"))
        assert f"bleu **{saved['bleu']['metrics'][beams]['value']:.2f}**" in line, line
        assert f"chrf **{saved['chrf']['metrics'][beams]['value']:.2f}**" in line, line
    capsys.readouterr()
    assert main(["translate", "--model", str(out), "i like apples .", "--num-beams", "2"]) == 0
    assert capsys.readouterr().out.strip() != ""
    hyp = corpus / "hyp.ja"
    assert main(["translate", "--model", str(out), "--input", str(corpus / "dev.en"), "--output", str(hyp)]) == 0
    assert len(hyp.read_text(encoding="utf-8").splitlines()) == 4
    # an existing output is not overwritten
    before = hyp.read_text(encoding="utf-8")
    assert main(["translate", "--model", str(out), "--input", str(corpus / "dev.en"), "--output", str(hyp)]) == 2
    assert hyp.read_text(encoding="utf-8") == before


def test_resume_equals_uninterrupted(corpus):
    import shutil

    full, part = corpus / "full", corpus / "part"
    assert main(train_args(corpus, full, 8) + ["train.keep_last=3"]) == 0
    assert main(train_args(corpus, part, 8) + ["train.keep_last=3"]) == 0
    shutil.rmtree(part / "checkpoints" / "step-00000008")  # as if interrupted after the step-4 checkpoint
    (part / "checkpoints" / "latest").write_text("step-00000004\n")
    assert main(train_args(corpus, part, 8) + ["train.keep_last=3", "--resume"]) == 0  # steps 5..8 again
    a = load(full / "checkpoints", seq2seq=True).model
    b = load(part / "checkpoints", seq2seq=True).model
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n


def test_bad_input_errors(corpus, capsys, tiny_model):
    (corpus / "short.ja").write_text("\n".join(JA[:3]) + "\n", encoding="utf-8")
    args = train_args(corpus, corpus / "bad", 2)
    args[args.index(str(corpus / "train.ja"))] = str(corpus / "short.ja")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.en has 32 lines but" in err and "short.ja has 3" in err and len(err.strip().splitlines()) == 1
    (corpus / "holes.ja").write_text("\n".join(JA[:2] + [""] + JA[3:]) + "\n", encoding="utf-8")
    (corpus / "holes.en").write_text("\n".join(EN) + "\n", encoding="utf-8")
    args = train_args(corpus, corpus / "bad2", 2)
    args[args.index(str(corpus / "dev.en"))], args[args.index(str(corpus / "dev.ja"))] = (
        str(corpus / "holes.en"), str(corpus / "holes.ja"))
    assert main(args) == 2
    assert "holes.ja:3: empty target sentence" in capsys.readouterr().err
    # language-model eval tasks do not apply to a translation model: refused before any work (eval.json = BLEU)
    assert main(train_args(corpus, corpus / "bad3", 2) + ["train.eval_tasks=piqa"]) == 2
    assert "--test" in capsys.readouterr().err and not (corpus / "bad3").exists()


def test_model_kind_errors(corpus, capsys, tiny_model):
    from zerollm.tokenizer.base import load_tokenizer
    from zerollm.train.checkpoint import save_checkpoint

    out = corpus / "run"
    assert main(train_args(corpus, out, 2)) == 0
    dec = tiny_model()
    save_checkpoint(corpus / "dec", dec, dec.cfg, tokenizer=load_tokenizer(out / "tokenizer"))
    capsys.readouterr()
    assert main(["translate", "--model", str(corpus / "dec"), "hello ."]) == 2
    assert "decoder-only" in capsys.readouterr().err
    assert main(["generate", "--model", str(out), "--prompt", "hi"]) == 2
    assert "encoder-decoder (seq2seq)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seq2seq"):
        load(out)
    loaded = load(out, seq2seq=True)
    assert isinstance(loaded.model, Seq2Seq)
    # a Marian export of the run translates the same through --model MARIAN_DIR
    from zerollm.interop.marian import export_marian

    export_marian(loaded.model, corpus / "marian", loaded.tokenizer)
    assert main(["translate", "--model", str(out / "checkpoints"), "i like apples ."]) == 0
    ours = capsys.readouterr().out
    assert main(["translate", "--model", str(corpus / "marian"), "i like apples ."]) == 0
    assert capsys.readouterr().out == ours
    with pytest.raises(ValueError, match="seq2seq"):
        load(corpus / "marian")
    # an over-long sentence to translate names its line
    (corpus / "long.en").write_text("ok .\n" + "a " * 200 + "\n", encoding="utf-8")
    assert main(["translate", "--model", str(out), "--input", str(corpus / "long.en")]) == 2
    assert "long.en:2: sentence is" in capsys.readouterr().err


def test_translate_train_under_torchrun_resumes_in_one_process(corpus):
    """Two gloo ranks (DDP) train the translation model through the one loop, each on its own batches; the
    main rank keeps the best checkpoint and writes the report; the run then resumes in one process at its
    global data position and finishes."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = corpus / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "zerollm.cli",
           *train_args(corpus, out, 8), "train.device=cpu", "train.keep_last=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows if "loss" in r) == 8
    assert any("dev_bleu" in r for r in rows) and (out / "report.md").is_file()
    assert list((out / "best").glob("step-*/model.safetensors"))
    state = torch.load(out / "checkpoints" / "step-00000004" / "trainer_state.pt", weights_only=True)
    assert len(state["ranks"]) == 2 and state["ranks"][0]["data"] == state["ranks"][1]["data"] == state["data"]
    assert state["data"]["index"] % 2 == 0  # a global position: every step advanced it by 2 batches
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-00000008")  # as if stopped after the step-4 checkpoint
    (out / "checkpoints" / "latest").write_text("step-00000004\n")
    assert main(train_args(corpus, out, 8) + ["--resume"]) == 0  # one process, from the global position
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][-1] == 8
    assert (out / "checkpoints" / "step-00000008" / "model.safetensors").is_file()


SEPARATE = ["--vocab", "separate", "--vocab-size", "320", "--src-vocab-size", "290"]  # ja target, en source


def test_separate_vocabularies(corpus, capsys):
    """--vocab separate: one tokenizer per side, each trained on its own side; the source one in src_tokenizer/
    beside tokenizer/ (the target's), in the run dir and in every checkpoint; the encoder has its own table;
    decoding reads the source with the source tokenizer, also from a Marian export. Config errors are one
    line naming the side and the field."""
    import shutil

    from zerollm.interop.marian import export_marian
    from zerollm.stages.translate import load_translator
    from zerollm.tokenizer.base import load_tokenizer
    from zerollm.tokenizer.unigram import train_unigram

    out = corpus / "sep"
    assert main(train_args(corpus, out, 4) + SEPARATE) == 0
    best = next((out / "best").glob("step-*"))
    for d in (out, best, out / "checkpoints" / "step-00000004"):
        assert (d / "tokenizer").is_dir() and (d / "src_tokenizer").is_dir(), d
    src, tgt = load_tokenizer(out / "src_tokenizer"), load_tokenizer(out / "tokenizer")
    assert (len(src.table.pieces), len(tgt.table.pieces)) == (290, 320)
    assert not any("私" in p for p in src.table.pieces) and any("私" in p for p in tgt.table.pieces)
    # one pad/bos/eos id for the model: both put the special tokens after the larger (target) table, and the
    # source's ids 290..319 are more reserved tokens, not holes
    assert (src.pad_id, src.bos_id, src.eos_id) == (tgt.pad_id, tgt.bos_id, tgt.eos_id) == (322, 320, 321)
    assert src.vocab_size == tgt.vocab_size == 336 and src.decode([290]) == "<|reserved_5|>"
    model, src_tok, tgt_tok = load_translator(out)
    assert model.src_emb is not None and model.src_emb.num_embeddings == src.vocab_size
    assert not model.cfg.share_embeddings and model.cfg.tie_output
    assert src_tok.hash == src.hash and tgt_tok.hash == tgt.hash
    capsys.readouterr()
    assert main(["translate", "--model", str(out), "i like apples .", "--num-beams", "2"]) == 0
    ours = capsys.readouterr().out
    assert ours.strip() != ""
    export_marian(model, corpus / "marian", tgt_tok, src_tok)
    assert (corpus / "marian" / "src_tokenizer").is_dir()
    assert main(["translate", "--model", str(corpus / "marian"), "i like apples .", "--num-beams", "2"]) == 0
    assert capsys.readouterr().out == ours
    # a source vocabulary the source side cannot fill: one line naming the side and the field
    assert main(train_args(corpus, corpus / "big", 2) + SEPARATE + ["--src-vocab-size", "400"]) == 2
    err = capsys.readouterr().err
    assert "source (en) tokenizer, src_vocab_size=400" in err and "too high" in err, err
    assert len(err.strip().splitlines()) == 1
    assert main(train_args(corpus, corpus / "joint", 2) + ["--src-vocab-size", "290"]) == 2
    assert "src_vocab_size needs vocab=separate" in capsys.readouterr().err
    # tokenizers whose special ids disagree (a source tokenizer trained on its own layout) are refused
    shutil.rmtree(out / "src_tokenizer")
    train_unigram(EN * 4, vocab_size=290).save(out / "src_tokenizer")  # pad at 292, the target's at 322
    assert main(train_args(corpus, out, 8) + SEPARATE + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "src_tokenizer gives pad/bos/eos the ids (292, 290, 291)" in err and len(err.strip().splitlines()) == 1


def test_special_ids_shared_across_sizes():
    from zerollm.stages.translate import _special_ids
    from zerollm.tokenizer.base import default_special_tokens

    larger, smaller = _special_ids(320, 320), _special_ids(300, 320)
    assert larger == {s: 320 + i for i, s in enumerate(default_special_tokens())}  # the usual layout
    assert {s: smaller[s] for s in larger} == larger  # the same ids on the smaller side ...
    assert sorted(smaller.values()) == list(range(300, 336))  # ... and every id in between is a token
