"""Shared pytest fixtures."""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

INSTALL_DEV = 'pip install -e ".[dev]"'  # installs every Python package any test needs (pyproject.toml)


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _explain_skip(reason: str) -> str:
    """A skip for a missing Python package names the command that installs it."""
    m = re.search(r"could not import '([\w.]+)'", reason)
    if m:
        return f"{m.group(1).split('.')[0]} is not installed: {INSTALL_DEV}"
    return reason


def _skip_to_failure(report, what: str) -> None:
    """Nothing skips on CI: a skipped test or module becomes a failure that says why it would have skipped."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{what} would skip on CI, where every test must run: {_explain_skip(reason)}"


def _rewrite_skip_reason(report) -> None:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, reason = report.longrepr
        report.longrepr = (path, line, _explain_skip(reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        if on_ci():
            _skip_to_failure(report, item.nodeid)
        else:
            _rewrite_skip_reason(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped:  # a module-level importorskip / skip(allow_module_level=True)
        if on_ci():
            _skip_to_failure(report, collector.nodeid)
        else:
            _rewrite_skip_reason(report)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Every test runs torch on one thread: results do not depend on the machine's core count, and small
    matmuls do not stall in the thread pool when the CI machine is shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shared_data_dir() -> Path:
    """The project's shared test data (/work/shared/data next to the repo), or $ZEROLLM_SHARED_DATA."""
    env = os.environ.get("ZEROLLM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data directory. Off CI, a test that needs it skips (with the reason) when it is
    absent; on CI (CI=true), where ../shared is always present, its absence is a failure, not a skip."""
    root = shared_data_dir()
    if not root.is_dir():
        if on_ci():
            pytest.fail(f"CI run without the shared test data at {root} (set ZEROLLM_SHARED_DATA)")
        pytest.skip(f"shared test data not found at {root} (set ZEROLLM_SHARED_DATA to its location)")
    return root


@pytest.fixture(scope="session")
def native():
    """The compiled kernels (zerollm.kernels); on CI (CI=true) failing to build them is a failure, elsewhere a
    skip (they need g++ and ninja)."""
    from zerollm import kernels

    if not kernels.load():
        if on_ci():
            pytest.fail("zerollm.kernels did not build (g++ and ninja are needed)")
        pytest.skip("zerollm.kernels did not build here: apt-get install g++ (ninja comes with zerollm)")
    return kernels.ops()


# ---- shared stand-ins: a byte tokenizer, tiny random models, a tiny trained BPE ---------------------------
class ByteTokenizer:
    """The tokenizer interface with no BPE at all: id b < 256 is byte b, `eos_id` (256) ends a document and
    decodes to nothing. Tests of the data layer, the engine and the samplers use it to pin down their own code
    alone. (zerollm.posttrain.tasks.byte_tokenizer is a real BPETokenizer with no merges.)"""

    def __init__(self, vocab_size: int = 257, eos_id: int = 256, fail_on: str | None = None):
        self.vocab_size, self.eos_id = vocab_size, eos_id
        self.special_tokens = {"<|eos|>": eos_id}
        self.hash = f"bytes-{vocab_size}-{eos_id}"
        self.fail_on = fail_on  # encode raises on a text containing this (a failing tokenizer)

    def encode(self, text: str, allowed_special="none") -> list[int]:
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError("tokenizer exploded")
        return list(text.encode("utf-8"))

    def encode_batch(self, texts, allowed_special="none", num_threads=8) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def token_bytes(self, i: int) -> bytes:
        return b"" if i == self.eos_id else bytes([i])

    def decode(self, ids) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", "replace")


@pytest.fixture
def byte_tokenizer() -> ByteTokenizer:
    """A fresh ByteTokenizer: 257 ids, eos = 256."""
    return ByteTokenizer()


@pytest.fixture(scope="session")
def make_byte_tokenizer() -> type[ByteTokenizer]:
    """The ByteTokenizer class: call it with other sizes (`make_byte_tokenizer(vocab_size=70000,
    eos_id=69999)`), a `fail_on` text, or subclass it."""
    return ByteTokenizer


TINY_MODEL = dict(vocab_size=257, n_layer=2, n_head=4, n_kv_head=2, d_model=64, max_seq_len=64)


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: `tiny_model(seed=0, **overrides)` -> a random Transformer in eval mode, seeded so the same
    call gives the same weights. Defaults (TINY_MODEL): 2 layers, 4 query heads sharing 2 KV heads, d_model
    64, 64 positions, the byte tokenizer's 257 ids; any ModelConfig field can be overridden."""
    from zerollm.config import ModelConfig
    from zerollm.model.transformer import Transformer

    def make(seed: int = 0, **overrides):
        torch.manual_seed(seed)
        return Transformer(ModelConfig(**{**TINY_MODEL, **overrides})).eval()

    return make


TINY_BPE_TEXT = "hello world, how are you? 日本語で話しましょう。 fine thanks the cat sat on the mat. "


@pytest.fixture(scope="session")
def tiny_bpe_tokenizer():
    """A real byte-level BPE (300 ids: 256 bytes, 28 merges, 16 specials) trained on one short English and
    Japanese sentence repeated."""
    from zerollm.tokenizer.bpe import train_bpe

    return train_bpe([TINY_BPE_TEXT * 30], vocab_size=300, show_progress=False)


class LiveServer:
    """uvicorn serving `app` in a thread on 127.0.0.1:<free port>: `.url`, `.stop()`."""

    def __init__(self, app, log_level: str = "warning"):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server():
    """Factory: `live_server(app)` -> a LiveServer (a real uvicorn on loopback) for a FastAPI app."""
    return LiveServer


@pytest.fixture
def tool_happy_model(tiny_model):
    """Factory: `tool_happy_model(tok, digit="1", ctx=1024)` -> a tiny model whose greedy choice is always
    <|tool_call|>, then `digit` inside any JSON string: its final LayerNorm outputs a constant vector
    (weight 0, bias e0) and the untied head scores only those two tokens. Tool-loop tests use it."""

    def make(tok, digit: str = "1", ctx: int = 1024):
        model = tiny_model(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32,
                           max_seq_len=ctx, tie_embeddings=False)
        with torch.no_grad():
            model.norm_f.weight.zero_()
            model.norm_f.bias.zero_()
            model.norm_f.bias[0] = 1.0
            model.lm_head.weight.zero_()
            model.lm_head.weight[tok.special_tokens["<|tool_call|>"], 0] = 10.0
            model.lm_head.weight[tok.encode(digit)[0], 0] = 5.0
        return model

    return make
