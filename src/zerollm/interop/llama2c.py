"""llama2.c model files (`.bin`, versions 0 and 1) and `tokenizer.bin`, both directions.

Model file (karpathy/llama2.c `export.py`, read by `run.c`): a header, then float32 arrays, row-major.

    v0 (legacy)  7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
                 (vocab_size < 0 means the classifier is not shared with the embedding)
                 tok_embeddings, attention_norm[L], wq[L], wk[L], wv[L], wo[L], ffn_norm[L], w1[L] (gate),
                 w2[L] (down), w3[L] (up), norm, freq_cis_real [seq_len, hd/2], freq_cis_imag, [output]
    v1           uint32 magic 0x616b3432 ("ak42"), int32 version 1, the 7 ints, uint8 shared_classifier,
                 zero padding to 256 bytes; attention_norm[L], ffn_norm[L], norm, tok_embeddings, wq[L],
                 wk[L], wv[L], wo[L], w1[L], w2[L], w3[L], [output]

The weights are Meta's layout: RoPE rotates interleaved channel pairs (2j, 2j+1), while zerollm (like HF)
rotates (j, j + hd/2). So wq / wk rows are permuted on the way in (`interleaved_to_half`) and back on the
way out (`half_to_interleaved`); both are pure reshapes, so a round trip is bit-exact. The freq_cis tables
of v0 are recomputed exactly as llama2.c's `precompute_freqs_cis` does (float32 angles, torch cos/sin); if
this platform's cos/sin would not reproduce a file's tables bit for bit, conversion keeps them beside the
checkpoint (`llama2c_freq_cis.safetensors`) and export writes them back.
run.c hardcodes RMSNorm eps 1e-5 and RoPE theta 10000, so exporting anything else is refused.

`tokenizer.bin` (llama2.c `tokenizer.py`): uint32 max_token_length, then per id: float32 score, uint32
length, the piece's UTF-8 bytes, where `▁` is written as a space and BOS/EOS as "\\n<s>\\n" / "\\n</s>\\n".
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from zerollm.artifacts import atomic_path, atomic_write_bytes
from zerollm.config import ModelConfig
from zerollm.interop.weights import InteropError, empty_model, load_into
from zerollm.tokenizer.sentencepiece_model import BYTE, CONTROL, NORMAL, UNKNOWN, SentencePieceModel
from zerollm.tokenizer.spm import SentencePieceTokenizer

MAGIC = 0x616B3432
V1_HEADER_BYTES = 256


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """q/k rows from Meta's interleaved RoPE pairs to rotate_half order (HF's convert_llama_weights_to_hf)."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse: rotate_half order -> interleaved pairs (llama.cpp's `LlamaModel.permute`)."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


# ----------------------------------------------------------------------------------------------------------
# model files


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        head = f.read(V1_HEADER_BYTES)
    if len(head) < 28:
        raise InteropError(f"{path}: too short for a llama2.c header ({len(head)} bytes)")
    magic, version = struct.unpack("<Ii", head[:8])
    if magic == MAGIC:
        if version != 1:
            raise InteropError(f"{path}: llama2.c format version {version} is not supported (0 and 1 are; "
                               f"version 2 is int8-quantized)")
        dim, hidden, L, H, KV, V, S = struct.unpack("<7i", head[8:36])
        shared, offset = bool(head[36]), V1_HEADER_BYTES
    else:
        dim, hidden, L, H, KV, V, S = struct.unpack("<7i", head[:28])
        version, shared, offset = 0, V > 0, 28
        V = abs(V)
    fields = dict(dim=dim, hidden_dim=hidden, n_layers=L, n_heads=H, n_kv_heads=KV, vocab_size=V, seq_len=S)
    if min(fields.values()) <= 0 or dim % H or H % KV or (dim // H) % 2 or max(dim, hidden, V, S) > 2**20:
        raise InteropError(f"{path}: not a llama2.c model file (header {fields})")
    return {**fields, "version": version, "shared": shared, "offset": offset}


def config_from_header(h: dict) -> ModelConfig:
    return ModelConfig(vocab_size=h["vocab_size"], n_layer=h["n_layers"], n_head=h["n_heads"], n_kv_head=h["n_kv_heads"],
                       d_model=h["dim"], d_ff=h["hidden_dim"], max_seq_len=h["seq_len"], norm="rmsnorm", norm_eps=1e-5,
                       mlp="swiglu", position="rope", rope_theta=10000.0, bias=False, tie_embeddings=h["shared"])


def layout(cfg: ModelConfig, version: int) -> list[tuple[str, tuple[int, ...]]]:
    """(our tensor name or a "freq_cis_*" table, shape) in file order."""
    D, F, L, hd = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.head_dim
    kv = cfg.n_kv_head * hd

    def per_layer(name: str, shape: tuple[int, ...]) -> list:
        return [(f"blocks.{i}.{name}", shape) for i in range(L)]
    emb = [("tok_emb.weight", (cfg.vocab_size, D))]
    attn = (per_layer("attn.q_proj.weight", (D, D)) + per_layer("attn.k_proj.weight", (kv, D))
            + per_layer("attn.v_proj.weight", (kv, D)) + per_layer("attn.o_proj.weight", (D, D)))
    ffn = (per_layer("mlp.gate_proj.weight", (F, D)) + per_layer("mlp.down_proj.weight", (D, F))
           + per_layer("mlp.up_proj.weight", (F, D)))
    head = [] if cfg.tie_embeddings else [("lm_head.weight", (cfg.vocab_size, D))]
    if version == 0:
        freqs = [("freq_cis_real", (cfg.max_seq_len, hd // 2)), ("freq_cis_imag", (cfg.max_seq_len, hd // 2))]
        return (emb + per_layer("norm1.weight", (D,)) + attn + per_layer("norm2.weight", (D,)) + ffn
                + [("norm_f.weight", (D,))] + freqs + head)
    return (per_layer("norm1.weight", (D,)) + per_layer("norm2.weight", (D,)) + [("norm_f.weight", (D,))] + emb
            + attn + ffn + head)


def freq_cis(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """llama2.c model.py `precompute_freqs_cis(dim // n_heads, max_seq_len)`: (cos, sin) [seq_len, hd/2]."""
    hd = cfg.head_dim
    freqs = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
    angles = torch.outer(torch.arange(cfg.max_seq_len), freqs).float()
    return torch.cos(angles), torch.sin(angles)


def _to_ours(name: str, t: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    if name.endswith("attn.q_proj.weight"):
        return interleaved_to_half(t, cfg.n_head)
    if name.endswith("attn.k_proj.weight"):
        return interleaved_to_half(t, cfg.n_kv_head)
    return t


def load_llama2c(path: str | Path, device: str | torch.device = "cpu"):
    """(model, header dict) from a llama2.c `.bin` (v0 or v1), weights read straight into the model."""
    path = Path(path)
    h = read_header(path)
    cfg = config_from_header(h)
    entries = layout(cfg, h["version"])
    size = path.stat().st_size
    end = h["offset"] + 4 * sum(math.prod(s) for _, s in entries)
    if size != end:
        pos = h["offset"]
        for name, shape in entries:
            pos += 4 * math.prod(shape)
            if pos > size:
                raise InteropError(f"{path}: truncated file: tensor {name!r} {list(shape)} ends at byte {pos}, the "
                                   f"file has {size} bytes (header says {h})")
        raise InteropError(f"{path}: {size - end} unexpected trailing bytes after the last tensor (header {h})")
    model = empty_model(cfg)
    tables: dict[str, torch.Tensor] = {}

    def produce():
        with open(path, "rb") as f:
            f.seek(h["offset"])
            for name, shape in entries:
                buf = torch.from_numpy(np.fromfile(f, dtype="<f4", count=math.prod(shape)).reshape(shape))
                if name.startswith("freq_cis"):
                    tables[name] = buf
                else:
                    yield name, _to_ours(name, buf, cfg)
    load_into(model, produce(), str(path))
    if tables and not all(torch.equal(tables[n], t) for n, t in zip(("freq_cis_real", "freq_cis_imag"), freq_cis(cfg))):
        h["freq_cis"] = tables  # this platform's cos/sin differ in the last bits: keep the file's tables
    return model.to(device).eval(), h


def export_llama2c(model, out: str | Path, version: int = 0, freq_tables: dict | None = None) -> Path:
    """Write `model` as a llama2.c `.bin` (v0: what run.c reads; v1: the 256-byte-header format).
    `freq_tables` ({"freq_cis_real", "freq_cis_imag"}, kept by `load_llama2c` when recomputing them here
    would not reproduce the file's bits) replace the recomputed v0 tables."""
    cfg: ModelConfig = model.cfg
    problems = [what for what, bad in (
        ("RMSNorm", cfg.norm != "rmsnorm"), ("SwiGLU MLP", cfg.mlp != "swiglu"), ("RoPE", cfg.position != "rope"),
        ("no biases", cfg.bias or cfg.qkv_bias), ("no qk-norm", cfg.qk_norm), ("sequential blocks", cfg.parallel_residual),
        ("full rotary", cfg.rotary_pct != 1.0), ("no RoPE scaling", bool(cfg.rope_scaling)),
        ("RoPE theta 10000", cfg.rope_theta != 10000.0), ("RMSNorm eps 1e-5", abs(cfg.norm_eps - 1e-5) > 1e-12),
        ("head_dim = d_model / n_head", cfg.head_dim * cfg.n_head != cfg.d_model)) if bad]
    if problems:
        raise InteropError(f"llama2.c (run.c) needs: {', '.join(problems)}; this model's config differs")
    if version not in (0, 1):
        raise InteropError(f"llama2.c version {version} is not supported for export (0 and 1 are)")
    sd = model.state_dict()
    V = cfg.vocab_size if cfg.tie_embeddings or version == 1 else -cfg.vocab_size
    ints = struct.pack("<7i", cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.n_head, cfg.n_kv_head, V, cfg.max_seq_len)
    cos, sin = freq_cis(cfg)
    if freq_tables and tuple(freq_tables["freq_cis_real"].shape) == tuple(cos.shape):
        cos, sin = freq_tables["freq_cis_real"], freq_tables["freq_cis_imag"]
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        if version == 1:
            head = struct.pack("<Ii", MAGIC, 1) + ints + struct.pack("B", int(cfg.tie_embeddings))
            f.write(head + b"\0" * (V1_HEADER_BYTES - len(head)))
        else:
            f.write(ints)
        for name, shape in layout(cfg, version):
            if name == "freq_cis_real":
                t = cos
            elif name == "freq_cis_imag":
                t = sin
            else:
                t = sd[name].detach().float().cpu()
                if name.endswith("attn.q_proj.weight"):
                    t = half_to_interleaved(t, cfg.n_head)
                elif name.endswith("attn.k_proj.weight"):
                    t = half_to_interleaved(t, cfg.n_kv_head)
            f.write(t.contiguous().numpy().astype("<f4", copy=False).tobytes())
    return Path(out)


# ----------------------------------------------------------------------------------------------------------
# tokenizer.bin


def export_tokenizer_bin(tok, out: str | Path) -> Path:
    """llama2.c `tokenizer.bin` from a SentencePiece tokenizer (pieces and scores, as tokenizer.py writes)."""
    table = getattr(tok, "table", None)
    if table is None:
        raise InteropError(f"tokenizer.bin needs a SentencePiece-style tokenizer, not {type(tok).__name__}")
    bos, eos = tok.model.trainer("bos_id"), tok.model.trainer("eos_id")
    pieces = []
    for i, (piece, score) in enumerate(zip(table.pieces, table.scores)):
        piece = "\n<s>\n" if i == bos else "\n</s>\n" if i == eos else piece
        pieces.append((piece.replace("\u2581", " ").encode("utf-8"), score))
    blob = struct.pack("<I", max(len(b) for b, _ in pieces))
    blob += b"".join(struct.pack("<fI", score, len(b)) + b for b, score in pieces)
    atomic_write_bytes(out, blob)
    return Path(out)


def read_tokenizer_bin(path: str | Path, vocab_size: int | None = None):
    """A zerollm SentencePiece (BPE, byte fallback) tokenizer from a llama2.c `tokenizer.bin`.
    The file has no count; `vocab_size` (the model's) bounds it, else the file is read to its end."""
    path = Path(path)
    data = path.read_bytes()
    pos, pieces = 4, []
    try:
        while pos < len(data) and (vocab_size is None or len(pieces) < vocab_size):
            score, n = struct.unpack_from("<fI", data, pos)
            piece = data[pos + 8:pos + 8 + n].decode("utf-8")
            if pos + 8 + n > len(data):
                raise struct.error("piece runs past the end")
            pos += 8 + n
            pieces.append((piece, score))
    except (struct.error, UnicodeDecodeError) as e:
        raise InteropError(f"{path}: corrupted tokenizer.bin at byte {pos}, token {len(pieces)} ({e})") from None
    out = []
    for i, (p, s) in enumerate(pieces):
        if p == "\n<s>\n" or p == "\n</s>\n":
            out.append((p.strip(), s, CONTROL))
        elif i == 0 and p == "<unk>":
            out.append((p, s, UNKNOWN))
        elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            out.append((p, s, BYTE))
        else:
            out.append((p.replace(" ", "\u2581"), s, NORMAL))
    byte_fallback = sum(t == BYTE for _, _, t in out) == 256
    trainer = {"model_type": 2, "vocab_size": len(out), "byte_fallback": byte_fallback, "unk_id": 0, "bos_id": 1,
               "eos_id": 2, "pad_id": -1}
    model = SentencePieceModel(pieces=out, trainer_spec=trainer, normalizer_spec={"name": "identity"})
    return SentencePieceTokenizer(model, special_tokens={})


__all__ = ["load_llama2c", "export_llama2c", "read_header", "config_from_header", "export_tokenizer_bin",
           "read_tokenizer_bin", "interleaved_to_half", "half_to_interleaved", "freq_cis"]
