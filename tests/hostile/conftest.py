"""Fixtures of the hostile-input corpus: a tiny checkpoint, a real uvicorn server on loopback, and a way to
run the CLI in-process and read what a user would see."""
from __future__ import annotations

import pytest
import torch

from zerollm import cli
from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.checkpoint import save_checkpoint

TEXT = ("Hello! The weather in Paris is sunny. The answer is 42. {\"city\": \"Tokyo\", \"days\": 3} ") * 40


def make_checkpoint(path, ctx: int = 256):
    tok = train_bpe([TEXT], vocab_size=300, show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=ctx)
    return save_checkpoint(path / "tiny" / "checkpoints" / "step-00000001", Transformer(cfg), cfg, tokenizer=tok)


@pytest.fixture(scope="session")
def hostile_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile_server(hostile_ckpt, live_server):
    from zerollm.serve import create_app
    from zerollm.serve.limits import Limits

    app = create_app(hostile_ckpt, limits=Limits(max_choices=8, max_request_tokens=1024))
    srv = live_server(app, log_level="error")
    yield srv
    srv.stop()
    app.state.backend.close()


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """cli.main(argv) in-process: (exit code, stdout, stderr); SystemExit (argparse) counts as its code."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="session")
def hostile_data(tmp_path_factory):
    """docs.jsonl → tokenizer → shards, through the public API (for the training-stage cases)."""
    import json

    from zerollm.api import data_prepare, tokenizer_train

    root = tmp_path_factory.mktemp("hostile_data")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": TEXT[i:i + 300]}) + "\n" for i in range(0, len(TEXT), 300)))
    tokenizer_train([str(docs)], root / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], root / "tok", root / "shards", val_fraction=0.2, show_progress=False)
    return root
