"""Where a model gets loaded: any `--model DIR` → a `Loaded` record (model, tokenizer, chat template, stop ids).

    DIR ──resolve_checkpoint──▶ a checkpoint dir (a run dir → its latest checkpoint) or a Hugging Face dir
        ──load──▶ Loaded(model, tokenizer, path, chat_template, stop_ids)

Accepted directories:
- a checkpoint (`model.safetensors` + `config.json` + `manifest.json`, train/checkpoint.py), quantized ones
  too (`quant.json`: the QuantLinear layers are rebuilt before the weights load, model/quant.py);
- a run directory (its `checkpoints/latest`, or the highest `checkpoints/step-*`);
- a Hugging Face model directory (`config.json` with `model_type`; interop/hf.py).

What a model needs besides its weights travels in the record, never as attributes stuck on the objects:
`chat_template` is the model's own Jinja template (a converted model keeps its tokenizer's; None means
zerollm's ChatML) and `stop_ids` are the ids that end a generation (the tokenizer's eos plus
generation_config.json's `eos_token_id`: converted chat models end turns with e.g. <|im_end|> as well).
A translation model trained with one vocabulary per side also has `src_tokenizer` (its `src_tokenizer/`
directory; `tokenizer` is then the target side's); None means `tokenizer` reads both sides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zerollm.artifacts import read_manifest
from zerollm.chat.format import CHATML_TEMPLATE
from zerollm.config import ModelConfig
from zerollm.interop.hf import is_hf_dir, load_hf
from zerollm.interop.hf_tokenizer import load_chat_template
from zerollm.interop.weights import empty_model, load_safetensors_into
from zerollm.runtime import pick_device
from zerollm.engine.native import optimize_for_decode


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: Any  # a zerollm.tokenizer.base.Tokenizer, or None when the directory has none
    path: Path  # the resolved checkpoint (or Hugging Face) directory
    chat_template: str | None = None  # the model's own Jinja chat template; None = zerollm's ChatML
    stop_ids: list[int] = field(default_factory=list)  # ids that end a generation
    src_tokenizer: Any = None  # an encoder-decoder's source tokenizer (src_tokenizer/), when one per side


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, a run dir (→ its latest checkpoint), a checkpoints/ dir, an HF model dir, or a hub
    name in the local Hugging Face cache (interop/hf_cache.py)."""
    path = Path(path)
    if not path.exists():  # a hub name ("gpt2", "org/name") found in the local Hugging Face cache, offline
        from zerollm.interop.hf_cache import resolve_model_dir

        path = resolve_model_dir(path)
    if is_hf_dir(path):  # a Hugging Face model directory (config.json with "model_type")
        return path
    if (path / "model.safetensors").is_file() and (path / "config.json").is_file():
        return path
    if (path / "dcp").is_dir() and (path / "config.json").is_file():  # sharded (FSDP): resumable, not loadable
        return path
    for ckdir in (path / "checkpoints", path):
        latest = ckdir / "latest"
        if latest.is_file():
            cand = ckdir / latest.read_text().strip()
            if cand.is_dir():
                return cand
        steps = sorted(p for p in ckdir.glob("step-*") if (p / "model.safetensors").is_file())
        if steps:
            return steps[-1]
    raise FileNotFoundError(f"{path}: not a checkpoint or run directory (no model.safetensors + config.json, "
                            f"no checkpoints/step-*)")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `--resume` continues from, or None."""
    try:
        return resolve_checkpoint(run_dir)
    except FileNotFoundError:
        return None


def load_model_config(ckpt: str | Path) -> ModelConfig:
    path = Path(ckpt) / "config.json"
    try:
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: invalid model config ({e})") from None


def load_weights(model: torch.nn.Module, path: str | Path, fills: dict | None = None) -> None:
    """Load safetensors into `model`'s parameters in place, a few tensors mapped at a time (no second copy
    of the weights); missing, unexpected or mis-shaped tensors raise a ValueError naming file and tensor.
    `fills`: tensors the model stores in another form (interop.weights.load_safetensors_into)."""
    load_safetensors_into(model, path, fills=fills)


def end_token_ids(model_dir: str | Path, tokenizer) -> list[int]:
    """Ids that end a generation: the tokenizer's eos plus generation_config.json's eos_token_id (an int or a
    list)."""
    ids = [tokenizer.eos_id] if tokenizer is not None and tokenizer.eos_id is not None else []
    gen_cfg = Path(model_dir) / "generation_config.json"
    if gen_cfg.is_file():
        try:
            eos = json.loads(gen_cfg.read_text(encoding="utf-8")).get("eos_token_id")
        except json.JSONDecodeError as e:
            raise ValueError(f"{gen_cfg}: not valid JSON ({e})") from None
        for i in (eos if isinstance(eos, list) else [eos]):
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def model_chat_template(model_dir: str | Path) -> str | None:
    """The model directory's own chat template (`chat_template.jinja` or tokenizer_config.json of a
    converted/HF model), or None when it has none or it is zerollm's ChatML."""
    template = load_chat_template(model_dir)
    return template if template and template != CHATML_TEMPLATE else None


def _build_model(ckpt: Path, device, value_head: bool, prepare) -> torch.nn.Module:
    read_manifest(ckpt, "checkpoint")
    cfg = load_model_config(ckpt)
    if (ckpt / "quant.json").is_file():  # weight-only quantized (zerollm quantize; model/quant.py)
        from zerollm.model.quant import load_quantized

        model = load_quantized(ckpt, cfg)
    else:
        model = empty_model(cfg)  # uninitialized: every parameter is filled from the file (tied = one Parameter)
        if value_head:  # a reward model (stage `reward`): Transformer + scalar head
            from zerollm.objectives import add_value_head

            add_value_head(model)
        load_weights(model, ckpt / "model.safetensors", prepare(model) if prepare else None)
    return model.to(device).eval()


def _model_kind(ckpt: Path) -> str:
    """"seq2seq" for an encoder-decoder (zerollm translate checkpoint or a Marian directory), else "decoder"."""
    try:
        cfg = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "decoder"
    return "seq2seq" if cfg.get("arch") == "seq2seq" or cfg.get("model_type") == "marian" else "decoder"


def _load_seq2seq(ckpt: Path, device) -> torch.nn.Module:
    if is_hf_dir(ckpt):  # a Hugging Face MarianMTModel directory
        from zerollm.interop.marian import import_marian

        return import_marian(ckpt).to(device).eval()
    from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig

    read_manifest(ckpt, "checkpoint")
    model = Seq2Seq(Seq2SeqConfig.from_dict(json.loads((ckpt / "config.json").read_text(encoding="utf-8"))))
    load_weights(model, ckpt / "model.safetensors")
    return model.to(device).eval()


def load(path: str | Path, device: str | torch.device = "cpu", *, with_tokenizer: bool = True,
         value_head: bool = False, for_decode: bool = False, prepare=None, seq2seq: bool = False) -> Loaded:
    """Load any `--model DIR` (see the module docstring). `device` may be "auto". `value_head`: a reward
    model saved by the `reward` stage (a run dir's `model/` is used when present). `for_decode`: lay the
    weights out for fast batch-1 decoding (values unchanged; not for training). `seq2seq`: load an
    encoder-decoder (model/seq2seq.py; a Marian dir is imported) — each kind refuses the other, naming it.
    `prepare(model) -> fills`:
    reshape the empty model before any weight is read and say which tensors it stores in another form
    (QLoRA's NF4 layers, posttrain/qlora.py); zerollm checkpoints only."""
    device = pick_device(device) if isinstance(device, str) else device
    if value_head and (Path(path) / "model").is_dir():
        path = Path(path) / "model"
    ckpt = resolve_checkpoint(path)
    if (ckpt / "dcp").is_dir() and not (ckpt / "model.safetensors").is_file():  # train.parallel=fsdp
        raise ValueError(f"{ckpt}: a sharded checkpoint; make one model.safetensors first with "
                         f"`zerollm checkpoint consolidate {path} --out DIR`")
    kind = _model_kind(ckpt)  # `seq2seq`: the caller (zerollm translate) wants an encoder-decoder
    if kind == "seq2seq" and not seq2seq:
        raise ValueError(f"{ckpt}: an encoder-decoder (seq2seq) translation model; use `zerollm translate "
                         f"--model {path}`, not a decoder-only stage")
    if seq2seq and kind != "seq2seq":
        raise ValueError(f"{ckpt}: a decoder-only language model; `translate` needs an encoder-decoder "
                         f"(seq2seq) model from `zerollm translate train` or a Marian directory")
    if seq2seq:
        from zerollm.tokenizer.base import load_tokenizer

        tokenizer, src_tokenizer = ((load_tokenizer(ckpt / d) if with_tokenizer and (ckpt / d).is_dir() else None)
                                    for d in ("tokenizer", "src_tokenizer"))  # target side; source side if its own
        return Loaded(_load_seq2seq(ckpt, device), tokenizer, Path(ckpt), None, end_token_ids(ckpt, tokenizer),
                      src_tokenizer)
    if is_hf_dir(ckpt):
        if value_head:
            raise ValueError(f"{ckpt}: a Hugging Face directory is not a zerollm reward model")
        model, tokenizer, ckpt = load_hf(ckpt, device=device, with_tokenizer=with_tokenizer)
    else:
        model = _build_model(ckpt, device, value_head, prepare)
        tokenizer = None
        if with_tokenizer and (ckpt / "tokenizer").is_dir():
            from zerollm.tokenizer.base import load_tokenizer

            tokenizer = load_tokenizer(ckpt / "tokenizer")
    if for_decode:
        model = optimize_for_decode(model)
    return Loaded(model, tokenizer, Path(ckpt), model_chat_template(ckpt) if tokenizer is not None else None,
                  end_token_ids(ckpt, tokenizer))


def load_for_use(path: str | Path, device: str | torch.device = "auto") -> Loaded:
    """A model to generate with: it must have a tokenizer; weights laid out for decoding."""
    loaded = load(path, device, for_decode=True)
    if loaded.tokenizer is None:
        raise FileNotFoundError(f"{path}: checkpoint has no tokenizer/ directory")
    return loaded


__all__ = ["Loaded", "load", "load_for_use", "resolve_checkpoint", "latest_checkpoint", "load_model_config",
           "load_weights", "end_token_ids", "model_chat_template"]
