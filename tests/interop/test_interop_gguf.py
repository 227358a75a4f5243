"""GGUF export, verified by reading the file back with gguf.GGUFReader: architecture metadata, tensor names,
shapes (GGUF lists dims reversed) and values (q/k permuted to interleaved RoPE for the llama arch), and the
tokenizer (tokens, types, merges, bos/eos, pre-tokenizer name, chat template)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from zerollm.config import ModelConfig  # noqa: E402
from zerollm.stages.convert import export  # noqa: E402
from zerollm.interop.gguf import export_gguf  # noqa: E402
from zerollm.interop.hf_tokenizer import _chars, derive_merges  # noqa: E402
from zerollm.interop.llama2c import half_to_interleaved, interleaved_to_half  # noqa: E402
from zerollm.interop.weights import InteropError  # noqa: E402
from zerollm.model.layers import apply_rope, rope_inv_freq  # noqa: E402
from zerollm.model.transformer import Transformer  # noqa: E402
from zerollm.train.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def bpe(shared_data):
    from zerollm.tokenizer.bpe import train_bpe

    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:100000]
    return train_bpe([text], vocab_size=400, show_progress=False)


def fields(reader) -> dict:
    return {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}


def tensors(reader) -> dict:
    return {t.name: t for t in reader.tensors}


def model(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=64, **kw)).eval()


def test_llama_gguf_names_shapes_values_and_tokenizer(bpe, tmp_path):
    m = model(vocab_size=bpe.vocab_size + 4, norm="rmsnorm", mlp="swiglu", position="rope", bias=False, n_kv_head=2,
              tie_embeddings=False, rope_theta=50000.0)  # embedding padded past the tokenizer
    save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=bpe)
    export(tmp_path / "ck", tmp_path / "m.gguf", format="gguf")
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    f = fields(r)
    assert f["general.architecture"] == "llama" and f["llama.block_count"] == 2
    assert f["llama.context_length"] == 64 and f["llama.embedding_length"] == 64
    assert f["llama.feed_forward_length"] == m.cfg.d_ff and f["llama.attention.head_count"] == 4
    assert f["llama.attention.head_count_kv"] == 2 and f["llama.rope.freq_base"] == 50000.0
    assert math.isclose(f["llama.attention.layer_norm_rms_epsilon"], 1e-5, rel_tol=1e-6)
    assert f["general.file_type"] == int(gguf.LlamaFileType.ALL_F32)
    # tokenizer
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "llama-bpe"
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == m.cfg.vocab_size and tokens[-1] == f"[PAD{m.cfg.vocab_size - 1}]"
    assert [bytes([b]) for b in range(256)] == [bpe.token_bytes(tokens.index(_chars(bytes([b])))) for b in range(256)]
    n = len(bpe.mergeable_ranks)
    assert tokens[n:bpe.vocab_size] == sorted(bpe.special_tokens, key=bpe.special_tokens.get)
    types = f["tokenizer.ggml.token_type"]
    assert set(types[:n]) == {1} and set(types[n:bpe.vocab_size]) == {3} and set(types[bpe.vocab_size:]) == {5}
    assert f["tokenizer.ggml.merges"] == [f"{_chars(a)} {_chars(b)}" for a, b in derive_merges(bpe)]
    assert f["tokenizer.ggml.bos_token_id"] == bpe.bos_id and f["tokenizer.ggml.eos_token_id"] == bpe.eos_id
    assert "<|im_start|>" in f["tokenizer.chat_template"]
    # tensors: names, reversed shapes, values (q/k in interleaved RoPE order)
    t, sd = tensors(r), m.state_dict()
    expected = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "norm_f.weight",
                "output.weight": "lm_head.weight"}
    for i in range(2):
        for g, o in (("attn_norm", "norm1"), ("ffn_norm", "norm2"), ("attn_q", "attn.q_proj"),
                     ("attn_k", "attn.k_proj"), ("attn_v", "attn.v_proj"), ("attn_output", "attn.o_proj"),
                     ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj")):
            expected[f"blk.{i}.{g}.weight"] = f"blocks.{i}.{o}.weight"
    assert set(t) == set(expected)
    for g, o in expected.items():
        ours = sd[o]
        assert list(t[g].shape) == list(reversed(ours.shape)), g
        data = torch.from_numpy(np.array(t[g].data)).reshape(ours.shape)
        if ".attn_q." in g or ".attn_k." in g:
            data = interleaved_to_half(data, 4 if ".attn_q." in g else 2)
        assert torch.equal(data, ours), g


def test_interleaved_rope_on_permuted_weights_equals_rotate_half():
    """What llama.cpp computes (pairs 2j, 2j+1 on the permuted rows) gives the same attention scores."""
    torch.manual_seed(0)
    H, hd, D, T = 2, 8, 16, 5
    wq, wk, x = torch.randn(H * hd, D), torch.randn(H * hd, D), torch.randn(T, D)
    inv = rope_inv_freq(hd, 10000.0)
    ang = torch.outer(torch.arange(T).float(), inv)  # (T, hd/2)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def half(w):  # ours / HF
        return apply_rope((x @ w.T).view(T, H, hd).transpose(0, 1), cos, sin)

    def inter(w):  # Meta / llama.cpp: rotate pairs (2j, 2j+1) by angle j
        q = (x @ w.T).view(T, H, hd // 2, 2).transpose(0, 1)
        c, s = ang.cos(), ang.sin()  # (T, hd/2), broadcast over heads
        a, b = q[..., 0], q[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(H, T, hd)

    ref = half(wq) @ half(wk).transpose(-1, -2)
    got = inter(half_to_interleaved(wq, H)) @ inter(half_to_interleaved(wk, H)).transpose(-1, -2)
    assert (got - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_gpt2_gguf_fused_qkv_output_copy_and_f16(bpe, tmp_path):
    m = model(vocab_size=bpe.vocab_size, norm="layernorm", mlp="gelu", position="learned", bias=True)
    from zerollm.tokenizer.bpe import BPETokenizer
    from zerollm.tokenizer.pretokenize import GPT2_PATTERN

    tok = BPETokenizer(bpe.mergeable_ranks, pattern=GPT2_PATTERN, special_tokens=bpe.special_tokens)
    export_gguf(m, tok, tmp_path / "g.gguf", dtype="f16")
    r = gguf.GGUFReader(tmp_path / "g.gguf")
    f, t, sd = fields(r), tensors(r), m.state_dict()
    assert f["general.architecture"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    assert f["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert f["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_F16)
    assert {int(x.tensor_type) for x in t.values() if len(x.shape) == 1} == {int(gguf.GGMLQuantizationType.F32)}
    assert {int(x.tensor_type) for x in t.values() if len(x.shape) == 2} == {int(gguf.GGMLQuantizationType.F16)}
    qkv = torch.cat([sd[f"blocks.1.attn.{p}_proj.weight"] for p in "qkv"])
    got = torch.from_numpy(np.array(t["blk.1.attn_qkv.weight"].data)).reshape(qkv.shape)
    assert got.dtype == torch.float16 and torch.equal(got, qkv.half())
    assert list(t["blk.1.attn_qkv.weight"].shape) == [64, 192] and list(t["position_embd.weight"].shape) == [64, 64]
    assert torch.equal(torch.from_numpy(np.array(t["output.weight"].data)).reshape(sd["tok_emb.weight"].shape),
                       sd["tok_emb.weight"].half())
    assert {"blk.0.ffn_up.weight", "blk.0.ffn_down.bias", "output_norm.bias"} <= set(t)


def test_qwen3_and_llama3_scaling_tensors(bpe, tmp_path):
    m = model(vocab_size=bpe.vocab_size, norm="rmsnorm", mlp="swiglu", position="rope", bias=False, n_kv_head=2,
              head_dim=24, qk_norm=True)
    export_gguf(m, bpe, tmp_path / "q3.gguf")
    r = gguf.GGUFReader(tmp_path / "q3.gguf")
    f, t = fields(r), tensors(r)
    assert f["general.architecture"] == "qwen3" and f["qwen3.attention.key_length"] == 24
    q = torch.from_numpy(np.array(t["blk.0.attn_q.weight"].data)).reshape(96, 64)
    assert torch.equal(q, m.state_dict()["blocks.0.attn.q_proj.weight"])  # NeoX-style RoPE: not permuted
    assert "blk.0.attn_q_norm.weight" in t and "output.weight" not in t  # tied
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    m = model(vocab_size=bpe.vocab_size, norm="rmsnorm", mlp="swiglu", position="rope", bias=False,
              rope_scaling=scaling)
    export_gguf(m, bpe, tmp_path / "l3.gguf")
    freqs = np.array(tensors(gguf.GGUFReader(tmp_path / "l3.gguf"))["rope_freqs.weight"].data)
    assert freqs.shape == (8,) and freqs[0] == 1.0 and freqs[-1] == pytest.approx(8.0)


def test_sentencepiece_tokenizer_metadata_and_bad_configs(shared_data, tmp_path):
    from zerollm.interop.llama2c import load_llama2c
    from zerollm.tokenizer.spm import import_sentencepiece

    d = shared_data / "llama2c_stories260K"
    m, _ = load_llama2c(d / "stories260K.bin")
    tok = import_sentencepiece(d / "tok512.model", special_tokens={})
    export_gguf(m, tok, tmp_path / "s.gguf")
    f = fields(gguf.GGUFReader(tmp_path / "s.gguf"))
    assert f["tokenizer.ggml.model"] == "llama" and f["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]
    assert f["tokenizer.ggml.scores"][260] == pytest.approx(tok.table.scores[260])
    assert f["tokenizer.ggml.token_type"][3] == 6 and f["tokenizer.ggml.bos_token_id"] == 1
    neox = model(vocab_size=64, norm="layernorm", mlp="gelu_exact", position="rope", bias=True, parallel_residual=True)
    with pytest.raises(InteropError, match="GPT-NeoX"):
        export_gguf(neox, None, tmp_path / "n.gguf")
    assert not (tmp_path / "n.gguf").exists()
