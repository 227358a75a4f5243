"""The hostile-input corpus against the CLI (issue 18 items 1, 4, 6 and the Low list): every case exits 2
with one line on stderr naming what is wrong, never a traceback, and deletes nothing."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

TRAIN = ["--preset", "gpt-1m", "model.n_layer=1", "model.d_model=32", "model.n_head=2", "train.steps=2",
         "train.batch_size=2", "train.seq_len=16", "train.progress=false", "train.eval_every=0", "sample_tokens=0"]


def _bad_config(ckpt, tmp_path, **change):
    """A copy of the checkpoint whose config.json has `change` applied."""
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(change)
    (bad / "config.json").write_text(json.dumps(cfg))
    return bad


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _text(path, text):
    path.write_text(text)
    return str(path)


# (id, argv builder(ckpt, data_root, tmp_path), words the message must contain)
CASES = [
    ("regex a{1000000}", lambda c, d, t: ["generate", "--model", str(c), "--regex", "a{1000000}", "--prompt", "hi"], "{1000000}"),
    ("json-schema minLength 1e9", lambda c, d, t: ["generate", "--model", str(c), "--json-schema",
                                                   _jsonl(t / "s.json", [{"type": "string", "minLength": 10 ** 9}]),
                                                   "--prompt", "hi"], "minLength"),
    ("json-schema empty enum", lambda c, d, t: ["generate", "--model", str(c), "--json-schema",
                                                _jsonl(t / "s.json", [{"enum": []}]), "--prompt", "hi"], "enum"),
    ("logit-bias id outside vocab", lambda c, d, t: ["generate", "--model", str(c), "--logit-bias", "99999=5", "--prompt", "hi"],
     "99999"),
    ("override train=5", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                          "train=5"], "train"),
    ("override model.foo=3", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                              "model.foo=3"], "foo"),
    ("grad_accum=0", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                      "train.grad_accum=0"], "grad_accum"),
    ("steps=-3", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                  "train.steps=-3"], "steps"),
    ("schedule=foo", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                      "train.schedule=foo"], "schedule"),
    ("lr=1e30 diverges", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                          "train.lr=1e30", "train.warmup_steps=0"], "lr"),
    ("n_layer 0", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, n_layer=0)), "--prompt", "hi"], "n_layer"),
    ("n_layer two", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, n_layer="two")), "--prompt", "hi"], "n_layer"),
    ("n_layer -1", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, n_layer=-1)), "--prompt", "hi"], "n_layer"),
    ("n_layer 200000", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, n_layer=200000)), "--prompt", "hi"], "n_layer"),
    ("vocab_size null", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, vocab_size=None)), "--prompt", "hi"],
     "vocab_size"),
    ("d_model 1e7", lambda c, d, t: ["generate", "--model", str(_bad_config(c, t, d_model=10 ** 7)), "--prompt", "hi"], "d_model"),
    ("memory --context -5", lambda c, d, t: ["memory", "--model", str(c), "--context", "-5"], "context"),
    ("quickstart --minutes -1", lambda c, d, t: ["quickstart", "--minutes", "-1", "--out", str(t / "q")], "minutes"),
    ("convert llama2c DIR", lambda c, d, t: ["convert", "--from", "llama2c", "--model", str(t), "--out", str(t / "o")],
     "directory"),
    ("dpo non-string prompt", lambda c, d, t: ["dpo", "--model", str(c), "--out", str(t / "r"), "--data",
                                               _jsonl(t / "p.jsonl", [{"prompt": 5, "chosen": "a", "rejected": "b"}]),
                                               "train.steps=1", "train.progress=false"], "prompt"),
    ("reward non-string prompt", lambda c, d, t: ["reward", "--model", str(c), "--out", str(t / "r"), "--data",
                                                  _jsonl(t / "p.jsonl", [{"prompt": ["x"], "chosen": "a", "rejected": "b"}]),
                                                  "train.steps=1", "train.progress=false"], "prompt"),
    ("grpo without ####", lambda c, d, t: ["grpo", "--model", str(c), "--out", str(t / "r"), "--data",
                                           _jsonl(t / "g.jsonl", [{"question": "1+1?", "answer": "two"}] * 3),
                                           "train.steps=1", "train.progress=false"], "####"),
    ("data prepare missing input", lambda c, d, t: ["data", "prepare", str(t / "missing.txt"), "--tokenizer",
                                                    str(d / "tok"), "--out", str(t / "sh")], "missing.txt"),
    # a few more of our own
    ("regex unbalanced", lambda c, d, t: ["generate", "--model", str(c), "--regex", "(a", "--prompt", "hi"], "missing"),
    ("json-schema not JSON", lambda c, d, t: ["generate", "--model", str(c), "--json-schema",
                                              _text(t / "s.json", "{nope"), "--prompt", "hi"], "Expecting"),
    ("warmup_steps=-1", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                         "train.warmup_steps=-1"], "warmup_steps"),
    ("config YAML is a list", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"),
                                               "--config", _text(t / "c.yaml", "- 1\n- 2\n"), *TRAIN], "mapping"),
    ("train.lr=abc", lambda c, d, t: ["pretrain", "--data", str(d / "shards"), "--out", str(t / "r"), *TRAIN,
                                      "train.lr=abc"], "lr"),
    ("quantize group size 0", lambda c, d, t: ["quantize", "--model", str(c), "--out", str(t / "q"),
                                               "--bits", "4", "--group-size", "0"], "group"),
]


@pytest.mark.parametrize("name,argv,words", CASES, ids=[c[0] for c in CASES])
def test_cli_mistake_is_one_line_exit_2(hostile_ckpt, hostile_data, tmp_path, capsys, name, argv, words):
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = run_cli(capsys, argv(hostile_ckpt, hostile_data, tmp_path))
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("Warning")]
    assert rc == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert words in lines[0], lines[0]
    assert set(before) <= {p.name for p in tmp_path.iterdir()}  # nothing of the user's deleted


def test_debug_shows_the_traceback(hostile_ckpt, capsys):
    rc, _, err = run_cli(capsys, ["--debug", "generate", "--model", str(hostile_ckpt), "--regex", "a{1000000}", "--prompt", "hi"])
    assert rc == 2 and "Traceback" in err and "GrammarTooLarge" in err


def test_override_after_a_named_option_wins(hostile_data, tmp_path, capsys):
    """`train.steps=5 --out R train.steps=2`: the later value is the one used (it used to lose)."""
    run = tmp_path / "r"
    rc, out, err = run_cli(capsys, ["pretrain", "--data", str(hostile_data / "shards"), *TRAIN, "train.steps=5",
                                    "--out", str(run), "train.steps=1"])
    assert rc == 0, err
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert max(steps) == 1
