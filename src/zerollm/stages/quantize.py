"""Stages `quantize` (write a weight-only quantized checkpoint) and `memory` (weight + KV-cache budget).

    zerollm quantize --model DIR --scheme int8|int4-sym|int4-asym|nf4 [--bits 8|4] [--group-size 32]
                     [--output-scheme int8|...|none] [--eval-tasks bpb,piqa [--eval-limit N]] --out DIR
    zerollm memory --params 7B | --model DIR  [--context 4096] [--batch 1]

A quantized checkpoint is an ordinary checkpoint directory (manifest.json kind "checkpoint", config.json,
tokenizer/) whose model.safetensors holds each Linear's codes and scales (`<module>.qweight`,
`<module>.scales`, ...; see model/quant.py) and a `quant.json` {"scheme", "group_size", "modules"}.
`zerollm.loading.load` sees quant.json and rebuilds the QuantLinear layers before loading.
With `--eval-tasks` the quantized model is then evaluated by the same hook the training stages use
(eval.evaluate_run): OUT/eval/ and OUT/eval.json, which `zerollm report` reads as a "quantize" column.

KV-cache bytes = 2 (k and v) x n_layer x n_kv_head x head_dim x context x batch x bytes per element.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zerollm.artifacts import atomic_dir, atomic_write_text, prepare_out, write_manifest
from zerollm.engine.native import optimize_for_decode
from zerollm.errors import check_range
from zerollm.loading import load
from zerollm.model.quant import SCHEMES, quant_manifest, quantize_model, weight_bytes
from zerollm.scaling.estimate import llama_like_shape, parse_count

BITS_DEFAULT_SCHEME = {8: "int8", 4: "int4-sym"}


@dataclass
class QuantizeConfig:
    model: str = field(default="",
                       metadata={"required": True, "help": "checkpoint, run or Hugging Face model directory"})
    out: str = field(default="", metadata={"required": True})
    bits: int | None = field(default=None, metadata={"choices": (8, 4)})
    scheme: str | None = field(default=None, metadata={"choices": SCHEMES})
    group_size: int = 32
    output_scheme: str = field(default="int8", metadata={"choices": SCHEMES + ("none",),
                               "help": "scheme of the output projection (default int8; none keeps it float)"})
    overwrite: bool = field(default=False, metadata={"help": "if --out holds something else, move it aside"})
    eval_tasks: str = field(default="", metadata={"help": "evaluate the quantized model on these `zerollm eval` "
                                                          "tasks → OUT/eval.json (report card)"})
    eval_limit: int | None = field(default=200, metadata={"help": "items per task of that evaluation"})


@dataclass
class MemoryConfig:
    params: str | None = field(default=None, metadata={"help": "e.g. 7B, 124M"})
    model: str | None = None
    context: int = 4096
    batch: int = 1

    def __post_init__(self) -> None:
        check_range("--context", self.context, 1, integer=True)
        check_range("--batch", self.batch, 1, integer=True)


def quantize(model: str | Path, out: str | Path, scheme: str | None = None, bits: int | None = None,
             group_size: int = 32, output_scheme: str | None = "int8", overwrite: bool = False,
             eval_tasks: str = "", eval_limit: int | None = 200) -> Path:
    """Quantize every Linear of the checkpoint `model` (the output projection in `output_scheme`; None keeps
    it float) and save it to `out`; returns `out`. `out` may hold a checkpoint (replaced); anything else there
    is an error unless `overwrite` (moved aside). `eval_tasks`: then evaluate it (OUT/eval.json)."""
    from safetensors.torch import save_file

    if scheme is None:
        if bits not in BITS_DEFAULT_SCHEME:
            raise ValueError("give --scheme (int8, int4-sym, int4-asym, nf4) or --bits 8|4")
        scheme = BITS_DEFAULT_SCHEME[bits]
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} (choose from {', '.join(SCHEMES)})")
    if bits is not None and (bits == 8) != (scheme == "int8"):
        raise ValueError(f"--bits {bits} does not match --scheme {scheme}")
    if group_size < 1:
        raise ValueError(f"--group-size must be a positive number of weights, got {group_size}")
    if eval_tasks:  # every task file checked before any work
        from zerollm.eval import get_task, parse_tasks

        for t in parse_tasks(eval_tasks):
            get_task(t)
        if eval_limit is not None and eval_limit < 1:
            raise ValueError(f"--eval-limit must be at least 1, got {eval_limit}")
    prepare_out(out, "checkpoint", overwrite=overwrite, inputs=[model])
    t0 = time.perf_counter()
    loaded = load(model, with_tokenizer=False)
    m, ckpt = loaded.model, loaded.path
    optimize_for_decode(m, False)  # plain weights before quantizing
    quantize_model(m, scheme, group_size, output_scheme=output_scheme)
    meta = quant_manifest(m)
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    if m.cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    out = Path(out)
    with atomic_dir(out, "checkpoint") as tmp:
        shutil.copyfile(Path(ckpt) / "config.json", tmp / "config.json")
        if (Path(ckpt) / "tokenizer").is_dir():
            shutil.copytree(Path(ckpt) / "tokenizer", tmp / "tokenizer")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt", "quantization": scheme})
        atomic_write_text(tmp / "quant.json", json.dumps(meta, indent=1) + "\n")
        write_manifest(tmp, "checkpoint", step=0, tokens_seen=0, quantization=scheme, group_size=group_size,
                       output_scheme=output_scheme, source=str(ckpt), stage="quantize",
                       elapsed_s=round(time.perf_counter() - t0, 3))
    if eval_tasks:  # the one evaluation hook (eval/__init__.py), as a training stage's train.eval_tasks
        from zerollm.eval import evaluate_run

        evaluate_run(out, eval_tasks, eval_limit)
    return out


def parse_params(text: str) -> int:
    """'7B' / '124M' / '1.5e9' -> number of parameters (scaling/estimate.py's parse_count)."""
    return parse_count(text)


def memory(params: str | None = None, model: str | None = None, context: int = 4096, batch: int = 1) -> str:
    """A table of weight and KV-cache memory for fp32, bf16, int8, int4 (and nf4) weights."""
    if model is not None:
        from zerollm.loading import load_model_config, resolve_checkpoint

        cfg = load_model_config(resolve_checkpoint(model))
        from zerollm.model.transformer import Transformer

        with torch.device("meta"):
            m = Transformer(cfg)
        n = sum(p.numel() for p in m.parameters())
        emb = m.tok_emb.weight.numel() + (m.pos_emb.weight.numel() if m.pos_emb is not None else 0)
        shape = {"n_layer": cfg.n_layer, "n_kv_head": cfg.n_kv_head, "head_dim": cfg.head_dim}
        name = f"{model} ({n / 1e6:.1f}M params)"
    else:
        n = parse_params(params or "7B")
        shape = llama_like_shape(n)
        emb = 0
        name = f"{params} params (assumed {shape['n_layer']} layers, {shape['n_kv_head']} kv heads x {shape['head_dim']})"
    kv_elems = 2 * shape["n_layer"] * shape["n_kv_head"] * shape["head_dim"] * context * batch
    big = n * 4 + kv_elems * 4 >= 1024 ** 3
    unit, gib = ("GiB", 1024 ** 3) if big else ("MiB", 1024 ** 2)
    lines = [f"{name}, context {context}, batch {batch}", "",
             f"{'weights':<10}{'weights ' + unit:>12}{'KV fp32 ' + unit:>13}{'KV bf16 ' + unit:>13}"
             f"{'total (bf16 KV)':>17}"]
    for scheme in ("fp32", "bf16", "int8", "int4", "nf4"):
        # embeddings stay in float (bf16 when the rest is quantized), as model/quant.py does
        w = weight_bytes(n - emb, scheme) + emb * (4 if scheme == "fp32" else 2)
        lines.append(f"{scheme:<10}{w / gib:>12.2f}{kv_elems * 4 / gib:>13.2f}{kv_elems * 2 / gib:>13.2f}"
                     f"{(w + kv_elems * 2) / gib:>17.2f}")
    return "\n".join(lines)
