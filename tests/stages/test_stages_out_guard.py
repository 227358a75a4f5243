"""`--out` never destroys what zerollm did not write (issue 18 items 2 and 6): each case failed before the fix
(the user's files were deleted or turned into a directory, or the CLI printed a traceback)."""
from __future__ import annotations

import pytest
import torch

from zerollm import cli
from zerollm.artifacts import artifact_kind
from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.train.checkpoint import save_checkpoint

TEXT = "The quick brown fox jumps over the lazy dog. 素早い茶色の狐がのろまな犬を飛び越える。\n" * 50


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "mydocs"
    d.mkdir()
    (d / "a.txt").write_text(TEXT, encoding="utf-8")
    return d


def _run(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_data_prepare_refuses_an_out_that_holds_its_inputs(docs, tmp_path, capsys):
    assert _run(capsys, "tokenizer", "train", str(docs), "--vocab-size", "300", "--out", str(tmp_path / "tok"))[0] == 0
    rc, err = _run(capsys, "data", "prepare", str(docs), "--tokenizer", str(tmp_path / "tok"), "--out", str(docs))
    assert rc == 2 and "inside --out" in err and len(err.strip().splitlines()) == 1
    assert (docs / "a.txt").read_text(encoding="utf-8") == TEXT  # the user's documents are still there


def test_outputs_replace_only_their_own_kind(docs, tmp_path, capsys):
    tok = tmp_path / "tok"
    for _ in range(2):  # a tokenizer dir is replaced by a new tokenizer: same kind, zerollm wrote it
        assert _run(capsys, "tokenizer", "train", str(docs), "--vocab-size", "300", "--out", str(tok))[0] == 0
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.md").write_text("mine")
    rc, err = _run(capsys, "tokenizer", "train", str(docs), "--vocab-size", "300", "--out", str(mine))
    assert rc == 2 and "--overwrite" in err and (mine / "todo.md").read_text() == "mine"
    rc, _ = _run(capsys, "tokenizer", "train", str(docs), "--vocab-size", "300", "--out", str(mine), "--overwrite")
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("notes.old-")]
    assert rc == 0 and artifact_kind(mine) == "tokenizer" and (aside[0] / "todo.md").read_text() == "mine"


def test_quantize_and_export_never_turn_a_file_into_a_directory(tmp_path, capsys):
    cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=32)
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck", Transformer(cfg), cfg)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    rc, err = _run(capsys, "quantize", "--model", str(ck), "--scheme", "int8", "--out", str(notes))
    assert rc == 2 and "is a file" in err and notes.read_text() == "keep me"
    rc, err = _run(capsys, "quantize", "--model", str(ck), "--scheme", "int8", "--group-size", "0", "--out",
                   str(tmp_path / "q"))
    assert rc == 2 and "--group-size" in err and not (tmp_path / "q").exists()
    gguf = tmp_path / "model.gguf"
    gguf.write_text("someone else's file")
    rc, err = _run(capsys, "export", "--format", "gguf", "--model", str(ck), "--out", str(gguf))
    assert rc == 2 and gguf.read_text() == "someone else's file"
    rc, err = _run(capsys, "quantize", "--model", str(ck), "--scheme", "int8", "--out", str(tmp_path))
    assert rc == 2 and "inside --out" in err and (ck / "model.safetensors").is_file()  # the input lies in --out


def test_missing_input_is_one_line_exit_2(tmp_path, capsys):
    rc, err = _run(capsys, "tokenizer", "train", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "tok"))
    assert rc == 2 and "missing.txt" in err and len(err.strip().splitlines()) == 1
