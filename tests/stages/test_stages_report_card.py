"""Issue 15: every stage writes its own eval.json, so `zerollm report` builds one card across stages without
re-running anything: a pretrain run (train.eval_tasks), its quantized checkpoint (quantize --eval-tasks) and a
translate run (test BLEU/chrF). Metric rows are the union over the runs; a run without a metric shows "–"."""
from __future__ import annotations

import json

from zerollm.cli import main

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. ") * 20 + "Call me Ishmael. Some years ago, never mind how long precisely. " * 20
EN = ["i like apples .", "he is a student .", "she likes cats .", "we are friends ."]
JA = ["私 は りんご が 好き だ 。", "彼 は 学生 で す 。", "彼女 は 猫 が 好き だ 。", "私 達 は 友達 だ 。"]


def _row(card: str, name: str) -> list[str]:
    line = next(x for x in card.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_report_card_across_pretrain_quantize_translate(tmp_path):
    from zerollm.api import data_prepare, tokenizer_train

    docs, bpb = tmp_path / "docs.jsonl", tmp_path / "heldout.txt"
    docs.write_text("".join(json.dumps({"text": TEXT[i:i + 400]}) + "\n" for i in range(0, len(TEXT), 400)))
    bpb.write_text("Call me Ishmael.\n\nA truth universally acknowledged.\n")
    tokenizer_train([str(docs)], tmp_path / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], tmp_path / "tok", tmp_path / "shards", val_fraction=0.2, show_progress=False)
    pre = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tmp_path / "shards"), "--out", str(pre), "--preset", "gpt-1m",
                 "model.n_layer=1", "model.d_model=32", "model.n_head=2", "train.steps=4", "train.batch_size=2",
                 "train.seq_len=32", "train.eval_every=4", "train.eval_batches=1", "train.ckpt_every=4",
                 "train.log_every=1", "train.progress=false", "sample_tokens=0",
                 f"train.eval_tasks=bpb:{bpb}", "train.eval_limit=2"]) == 0
    q = tmp_path / "q4"
    assert main(["quantize", "--model", str(pre), "--scheme", "int4-sym", "--out", str(q),
                 "--eval-tasks", f"bpb:{bpb}", "--eval-limit", "2"]) == 0
    for name, lines in (("t.en", EN * 4), ("t.ja", JA * 4), ("d.en", EN), ("d.ja", JA)):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    tr = tmp_path / "enja"
    assert main(["translate", "train", "--train", str(tmp_path / "t.en"), str(tmp_path / "t.ja"), "--dev",
                 str(tmp_path / "d.en"), str(tmp_path / "d.ja"), "--test", str(tmp_path / "d.en"),
                 str(tmp_path / "d.ja"), "--out", str(tr), "--vocab-size", "320", "train.max_minutes=0",
                 "train.steps=40", "train.lr=3e-3", "train.warmup_steps=1", "train.progress=false",
                 "train.eval_every=20", "train.ckpt_every=20", "train.log_every=10", "label_smoothing=0", "model.d_model=32", "model.d_ff=64",
                 "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dropout=0.0", "max_tokens=64",
                 "dev_sentences=4", "test_beams=2"]) == 0
    card_md = tmp_path / "card.md"
    assert main(["report", str(pre), str(q), str(tr), "--out", str(card_md)]) == 0
    card = card_md.read_text(encoding="utf-8")
    assert "| pre (pretrain) | q4 (quantize int4-sym) | enja (translate) |" in card
    pre_eval, q_eval, tr_eval = (json.loads((d / "eval.json").read_text()) for d in (pre, q, tr))
    bpb_row = _row(card, "bpb:heldout.txt bits_per_byte")
    assert bpb_row == [f"{pre_eval['bpb:heldout.txt']['metrics']['bits_per_byte']['value']:.4f}",
                       f"{q_eval['bpb:heldout.txt']['metrics']['bits_per_byte']['value']:.4f}", "–"]
    assert bpb_row[0] != bpb_row[1]  # the 4-bit model is its own evaluation, not a copy of the float one
    bleu = tr_eval["bleu"]["metrics"]
    assert bleu["greedy"]["value"] > 0  # it learned something: a real score, not an empty translation
    report = (tr / "report.md").read_text(encoding="utf-8")  # the same numbers the run's report states
    assert f"- test, greedy: bleu **{bleu['greedy']['value']:.2f}**" in report
    assert f"- test, beam 2: bleu **{bleu['beam2']['value']:.2f}**" in report
    assert _row(card, "bleu beam2") == ["–", "–", f"{bleu['beam2']['value']:.4f}"]
    assert _row(card, "bleu greedy") == ["–", "–", f"{bleu['greedy']['value']:.4f}"]
    assert _row(card, "chrf greedy") == ["–", "–", f"{tr_eval['chrf']['metrics']['greedy']['value']:.4f}"]
    assert all(c not in ("–", "") for c in _row(card, "wall time (s)"))  # the quantized dir records its own
    assert _row(card, "tokens seen")[2] != "–" and _row(card, "tokens seen")[1] == "–"
    assert (tmp_path / "card.png").stat().st_size > 1000
