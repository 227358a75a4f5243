"""llama2.c interop. Golden test on weights no one here trained: stories260K.bin + tok512 generate, greedily from
BOS, exactly the 200 tokens llama2.c's run.c printed (expected_greedy_200.txt, byte for byte); exporting the
model back gives the identical .bin, and the tokenizer the identical tokenizer.bin."""
from __future__ import annotations

import struct

import pytest
import torch

from zerollm import cli
from zerollm.engine.generate import GenerationConfig, generate
from zerollm.interop.llama2c import (export_llama2c, export_tokenizer_bin, interleaved_to_half, half_to_interleaved,
                                     load_llama2c, read_tokenizer_bin)
from zerollm.interop.weights import InteropError
from zerollm.tokenizer.spm import import_sentencepiece
from zerollm.loading import load


@pytest.fixture(scope="module")
def d(shared_data):
    return shared_data / "llama2c_stories260K"


def run_c_text(tok, ids: list[int]) -> bytes:
    """What run.c prints: each piece's bytes (`<0xNN>` pieces as the byte), the first piece after BOS without
    its leading space."""
    out = b""
    for k, i in enumerate(ids):
        piece = tok.token_bytes(i)
        out += piece[1:] if k == 0 and piece.startswith(b" ") else piece
    return out


def test_golden_greedy_200_tokens(d):
    model, header = load_llama2c(d / "stories260K.bin")
    assert header == {"dim": 64, "hidden_dim": 172, "n_layers": 5, "n_heads": 8, "n_kv_heads": 4, "vocab_size": 512,
                      "seq_len": 512, "version": 0, "shared": True, "offset": 28}
    tok = import_sentencepiece(d / "tok512.model", special_tokens={})
    ids = generate(model, tok, [1], GenerationConfig(max_new_tokens=200, temperature=0, stop_token_ids=[1]))
    assert len(ids) == 200
    assert run_c_text(tok, ids) == (d / "expected_greedy_200.txt").read_bytes()
    # tok512.bin read as a tokenizer encodes like tok512.model
    tok_bin = read_tokenizer_bin(d / "tok512.bin", 512)
    text = (d / "expected_greedy_200.txt").read_text()
    assert tok_bin.encode("Once upon a time") == tok.encode("Once upon a time") == [403, 407, 261, 378]
    assert tok_bin.encode(text) == tok.encode(text)


def test_export_v0_is_byte_identical_and_v1_round_trips(d, tmp_path):
    model, _ = load_llama2c(d / "stories260K.bin")
    export_llama2c(model, tmp_path / "v0.bin", version=0)
    assert (tmp_path / "v0.bin").read_bytes() == (d / "stories260K.bin").read_bytes()
    export_llama2c(model, tmp_path / "v1.bin", version=1)
    raw = (tmp_path / "v1.bin").read_bytes()
    assert struct.unpack("<Ii7iB", raw[:37]) == (0x616B3432, 1, 64, 172, 5, 8, 4, 512, 512, 1) and len(raw) == 256 + 4 * (
        264128 - 2 * 512 * 4)
    again, h = load_llama2c(tmp_path / "v1.bin")
    assert h["version"] == 1 and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                      again.state_dict().values()))
    tok = import_sentencepiece(d / "tok512.model", special_tokens={})
    export_tokenizer_bin(tok, tmp_path / "tokenizer.bin")
    assert (tmp_path / "tokenizer.bin").read_bytes() == (d / "tok512.bin").read_bytes()


def test_cli_convert_generate_export_round_trip(d, tmp_path, capsys):
    ck = tmp_path / "stories"
    assert cli.main(["convert", "--from", "llama2c", str(d / "stories260K.bin"), "--tokenizer",
                     str(d / "tok512.model"), "--out", str(ck)]) == 0
    loaded = load(ck)
    model, tok = loaded.model, loaded.tokenizer
    ids = generate(model, tok, [1], GenerationConfig(max_new_tokens=40, temperature=0, stop_token_ids=[1]))
    assert (d / "expected_greedy_200.txt").read_bytes().startswith(run_c_text(tok, ids))
    assert cli.main(["export", "--format", "llama2c", "--model", str(ck), "--out", str(tmp_path / "out.bin")]) == 0
    assert (tmp_path / "out.bin").read_bytes() == (d / "stories260K.bin").read_bytes()
    assert (tmp_path / "tokenizer.bin").read_bytes() == (d / "tok512.bin").read_bytes()


def test_freq_tables_this_platform_cannot_recompute_are_kept(d, tmp_path):
    """Another machine's cos/sin may differ in the last bit: the converted dir keeps the file's tables."""
    data = bytearray((d / "stories260K.bin").read_bytes())
    pos = len(data) - 4 * 512 * 4 + 4 * 5  # freq_cis_imag[1][1] (v0, tied: the tables end the file)
    data[pos:pos + 4] = struct.pack("<f", struct.unpack("<f", data[pos:pos + 4])[0] + 1e-7)
    (tmp_path / "odd.bin").write_bytes(bytes(data))
    assert cli.main(["convert", "--from", "llama2c", str(tmp_path / "odd.bin"), "--out", str(tmp_path / "ck")]) == 0
    assert (tmp_path / "ck" / "llama2c_freq_cis.safetensors").is_file()
    assert cli.main(["export", "--format", "llama2c", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "o.bin")]) == 0
    assert (tmp_path / "o.bin").read_bytes() == bytes(data)


def test_untied_gqa_model_round_trips_through_v0_and_v1(tmp_path):
    from zerollm.config import ModelConfig
    from zerollm.model.transformer import Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=40, max_seq_len=16,
                      norm="rmsnorm", mlp="swiglu", position="rope", bias=False, tie_embeddings=False)
    m = Transformer(cfg).eval()
    ids = torch.randint(0, 50, (1, 10))
    for version in (0, 1):
        export_llama2c(m, tmp_path / f"m{version}.bin", version=version)
        back, h = load_llama2c(tmp_path / f"m{version}.bin")
        assert not h["shared"] and torch.equal(back(ids), m(ids))
    w = torch.randn(2 * 8, 5)
    assert torch.equal(interleaved_to_half(half_to_interleaved(w, 2), 2), w)


def test_bad_llama2c_inputs(d, tmp_path):
    data = (d / "stories260K.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:600_000])
    with pytest.raises(InteropError, match=r"cut.bin: truncated file: tensor 'blocks\.\d\.mlp\.\w+\.weight'"):
        load_llama2c(tmp_path / "cut.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\0" * 8)
    with pytest.raises(InteropError, match="8 unexpected trailing bytes"):
        load_llama2c(tmp_path / "long.bin")
    (tmp_path / "v2.bin").write_bytes(struct.pack("<Ii", 0x616B3432, 2) + b"\0" * 300)
    with pytest.raises(InteropError, match="version 2"):
        load_llama2c(tmp_path / "v2.bin")
    assert cli.main(["convert", "--from", "llama2c", str(tmp_path / "cut.bin"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    from zerollm.config import ModelConfig
    from zerollm.model.transformer import Transformer

    gpt = Transformer(ModelConfig(vocab_size=50, n_layer=1, n_head=2, d_model=16, max_seq_len=8))
    with pytest.raises(InteropError, match="RMSNorm, SwiGLU MLP, RoPE"):
        export_llama2c(gpt, tmp_path / "gpt.bin")
    assert not (tmp_path / "gpt.bin").exists()
