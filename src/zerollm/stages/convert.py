"""`zerollm convert` and `zerollm export`: open models into zerollm, and zerollm models out to other tools.

    convert(src, out, from_format="hf")        HF model dir -> zerollm checkpoint dir
    convert(src, out, from_format="llama2c", tokenizer="tok512.model")   llama2.c .bin -> checkpoint dir
    export(model_dir, out, format="hf")        -> HF dir (transformers, vLLM, lm-eval)
    export(model_dir, out, format="gguf")      -> .gguf file (llama.cpp, Ollama)
    export(model_dir, out, format="llama2c", version=0|1)  -> .bin (+ tokenizer.bin beside it)

`model_dir` is anything `--model` takes: a checkpoint dir, a run dir (its latest checkpoint) or an HF dir.
A converted checkpoint dir is an ordinary zerollm checkpoint (step 0), so generate, serve and fine-tuning
use it like one of ours; its manifest records where it came from. Outputs are written atomically: a bad
input leaves no partial directory or file behind.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import atomic_dir, atomic_write_json, atomic_write_text, prepare_out, write_manifest
from zerollm.interop.llama2c import export_llama2c, export_tokenizer_bin, load_llama2c, read_tokenizer_bin
from zerollm.loading import load
from zerollm.train.checkpoint import save_weights

FROM_FORMATS = ("hf", "llama2c")
EXPORT_FORMATS = ("hf", "gguf", "llama2c")
FREQ_FILE = "llama2c_freq_cis.safetensors"  # a llama2.c file's RoPE tables, if this platform cannot recompute them


@dataclass
class ConvertConfig:
    from_format: str = field(default="hf", metadata={"flag": "--from", "choices": FROM_FORMATS})
    src: str | None = field(default=None, metadata={"positional": "?", "help": "the same as --model (older scripts)"})
    model: str | None = field(default=None, metadata={"help": "HF model directory, or llama2.c .bin file"})
    out: str = field(default="", metadata={"required": True, "help": "checkpoint directory to write"})
    tokenizer: str | None = field(default=None, metadata={"help": "llama2c: tokenizer .model or tokenizer.bin"})
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})


@dataclass
class ExportConfig:
    format: str = field(default="", metadata={"required": True, "choices": EXPORT_FORMATS})
    model: str = field(default="", metadata={"required": True, "help": "checkpoint, run or HF directory"})
    out: str = field(default="", metadata={"required": True, "help": "directory (hf) or file (gguf, llama2c) to write"})
    version: int = field(default=0, metadata={"help": "llama2c file version (0 = run.c's, 1)"})
    dtype: str | None = field(default=None, metadata={"help": "hf: float32|bfloat16|float16; gguf: f32|f16"})
    tokenizer_out: str | None = field(default=None, metadata={"help": "llama2c: where to write tokenizer.bin"})
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})


def convert(src: str | Path, out: str | Path, from_format: str = "hf", tokenizer: str | Path | None = None,
            overwrite: bool = False) -> Path:
    """Convert `src` (an HF model dir, or a llama2.c `.bin` with `tokenizer` = .model / tokenizer.bin)
    into a zerollm checkpoint dir at `out` (which may hold a checkpoint; anything else there is an error
    unless `overwrite`, which moves it aside)."""
    if from_format in FROM_FORMATS:
        prepare_out(out, "checkpoint", overwrite=overwrite, inputs=[src] + ([tokenizer] if tokenizer else []))
    if from_format == "hf":
        from zerollm.interop.hf import convert_hf, is_hf_dir

        if not is_hf_dir(src):
            raise FileNotFoundError(f"{src}: not a Hugging Face model directory (no config.json with model_type)")
        return convert_hf(src, out)
    if from_format == "llama2c":
        return _convert_llama2c(Path(src), Path(out), tokenizer)
    raise ValueError(f"convert --from {from_format!r}: supported formats are {', '.join(FROM_FORMATS)}")


def _llama2c_tokenizer(path: Path | None, vocab_size: int):
    if path is None:
        return None
    path = Path(path)
    if path.suffix == ".model":
        from zerollm.tokenizer.spm import import_sentencepiece

        return import_sentencepiece(path, special_tokens={})

    return read_tokenizer_bin(path, vocab_size)


def _convert_llama2c(src: Path, out: Path, tokenizer: str | Path | None) -> Path:
    model, header = load_llama2c(src)
    tok = _llama2c_tokenizer(Path(tokenizer) if tokenizer else None, model.cfg.vocab_size)
    with atomic_dir(out, "checkpoint") as tmp:
        atomic_write_text(tmp / "config.json", json.dumps(model.cfg.to_dict(), indent=2) + "\n")
        save_weights(model, tmp / "model.safetensors")
        if tok is not None:
            tok.save(tmp / "tokenizer")
        atomic_write_json(tmp / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2})
        if "freq_cis" in header:  # kept only when recomputing them would not give the same bits
            from safetensors.torch import save_file

            save_file(header["freq_cis"], str(tmp / FREQ_FILE))
        write_manifest(tmp, "checkpoint", step=0, tokens_seen=0, n_params=model.num_params(),
                       source={"format": "llama2c", "path": str(src), "version": header["version"]})
    return out


def export(model_dir: str | Path, out: str | Path, format: str = "hf", version: int = 0, dtype: str | None = None,
           tokenizer_out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Export a zerollm (or HF) model. hf: dtype float32|bfloat16|float16; gguf: dtype f32|f16; llama2c:
    version 0|1, and a tokenizer.bin (SentencePiece tokenizers) at `tokenizer_out` (default: beside `out`).
    An hf `out` may hold an earlier export (replaced); any other existing path (a .gguf / .bin file too) is an
    error unless `overwrite`, which moves it aside."""
    if format in EXPORT_FORMATS:
        prepare_out(out, "hf_export" if format == "hf" else "file", overwrite=overwrite, inputs=[model_dir])
        if format == "llama2c":  # tokenizer.bin is written beside the model file
            tokenizer_out = tokenizer_out or Path(out).with_name("tokenizer.bin")
            prepare_out(tokenizer_out, "file", overwrite=overwrite, inputs=[model_dir])
    import torch

    if format not in EXPORT_FORMATS:
        raise ValueError(f"export --format {format!r}: supported formats are {', '.join(EXPORT_FORMATS)}")
    loaded = load(model_dir, "cpu")
    model, tok, ckpt = loaded.model, loaded.tokenizer, loaded.path
    out = Path(out)
    if format == "hf":
        from zerollm.interop.hf import export_hf

        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if (dtype or "float32") not in dtypes:
            raise ValueError(f"export --format hf --dtype {dtype!r}: use one of {', '.join(dtypes)}")
        return export_hf(model, tok, out, model_dir=ckpt, dtype=dtypes[dtype or "float32"])
    if format == "gguf":
        from zerollm.interop.gguf import export_gguf
        from zerollm.interop.hf import default_chat_template
        from zerollm.interop.hf_tokenizer import load_chat_template

        template = load_chat_template(ckpt) or default_chat_template(tok)
        return export_gguf(model, tok, out, chat_template=template, dtype=dtype or "f32", name=Path(ckpt).name)

    tables = None
    if (Path(ckpt) / FREQ_FILE).is_file():
        from safetensors.torch import load_file

        tables = load_file(str(Path(ckpt) / FREQ_FILE))
    export_llama2c(model, out, version=version, freq_tables=tables)
    if tok is not None and hasattr(tok, "table"):
        export_tokenizer_bin(tok, tokenizer_out)
    return out


__all__ = ["convert", "export", "FROM_FORMATS", "EXPORT_FORMATS"]
