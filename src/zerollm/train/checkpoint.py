"""Checkpoint directories: weights as safetensors, trainer state for exact resume, written atomically.

    checkpoints/step-00001000/
      manifest.json        kind "checkpoint", step, tokens_seen, model summary
      config.json          ModelConfig (the whole architecture)
      model.safetensors    weights; a tied lm_head is stored once (as the embedding)
      tokenizer/           the tokenizer the model was trained with
      trainer_state.pt     optimizer + step + RNG + data position (tensors/ints only: weights_only=True)
      train_config.yaml    the resolved stage config
    checkpoints/latest     text file naming the newest step directory

The directory is assembled at a temporary sibling and renamed into place, so a crash mid-save leaves the
previous checkpoint intact and never a half-written one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zerollm.artifacts import atomic_dir, atomic_path, atomic_write_text, read_manifest, write_manifest
from zerollm.config import ModelConfig


def _dedup_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors that share memory (tied embeddings): keep the first name of each."""
    seen: dict[tuple, str] = {}
    out, aliases = {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out, aliases


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    tensors, aliases = _dedup_shared(model.state_dict())
    meta = {"format": "pt", **({"tied": json.dumps(aliases)} if aliases else {}), **(metadata or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors into `model`'s parameters in place, a few tensors mapped at a time (no second copy
    of the weights); missing, unexpected or mis-shaped tensors raise a ValueError naming file and tensor."""
    from zerollm.interop.weights import load_safetensors_into

    load_safetensors_into(model, path)


def save_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, model_cfg: ModelConfig, *,
                    tokenizer: Any = None, trainer_state: dict | None = None, config_yaml: str | None = None,
                    step: int = 0, tokens_seen: int = 0, extra: dict | None = None) -> Path:
    ckpt_dir = Path(ckpt_dir)
    with atomic_dir(ckpt_dir) as tmp:
        atomic_write_text(tmp / "config.json", json.dumps(model_cfg.to_dict(), indent=2) + "\n")
        save_weights(model, tmp / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
            template = getattr(tokenizer, "chat_template", None)  # an imported model's own (chat_format.py)
            if isinstance(template, str) and template:  # every checkpoint, mid-run ones too, chats in it
                from zerollm.interop.hf_tokenizer import CHAT_TEMPLATE_FILE

                atomic_write_text(tmp / "tokenizer" / CHAT_TEMPLATE_FILE, template)
        if trainer_state is not None:
            with atomic_path(tmp / "trainer_state.pt") as p:
                torch.save(trainer_state, p)
        if config_yaml is not None:
            atomic_write_text(tmp / "train_config.yaml", config_yaml)
        n_params = sum(p.numel() for p in model.parameters())
        write_manifest(tmp, "checkpoint", step=step, tokens_seen=tokens_seen, n_params=n_params, **(extra or {}))
    atomic_write_text(ckpt_dir.parent / "latest", ckpt_dir.name + "\n")
    return ckpt_dir


def prune_checkpoints(checkpoints_dir: str | Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    dirs = sorted(p for p in Path(checkpoints_dir).glob("step-*") if p.is_dir())
    for old in dirs[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, a run dir (→ its latest checkpoint) or a checkpoints/ dir."""
    from zerollm.interop.hf import is_hf_dir

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model directory")
    if is_hf_dir(path):  # a Hugging Face model directory (config.json with "model_type")
        return path
    if (path / "model.safetensors").is_file() and (path / "config.json").is_file():
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


def load_model_config(ckpt: str | Path) -> ModelConfig:
    path = Path(ckpt) / "config.json"
    try:
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: invalid model config ({e})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu", with_tokenizer: bool = True):
    """(model, tokenizer_or_None, checkpoint_dir) from a checkpoint or run directory, or a Hugging Face
    model directory (zerollm.interop.hf.load_hf)."""
    from zerollm.interop.hf import is_hf_dir, load_hf
    from zerollm.interop.weights import empty_model

    ckpt = resolve_checkpoint(path)
    if is_hf_dir(ckpt):
        return load_hf(ckpt, device=device, with_tokenizer=with_tokenizer)
    read_manifest(ckpt, "checkpoint")
    cfg = load_model_config(ckpt)
    if (ckpt / "quant.json").is_file():  # weight-only quantized (zerollm quantize; model/quant.py)
        from zerollm.model.quant import load_quantized
        model = load_quantized(ckpt, cfg)
    else:
        model = empty_model(cfg)  # uninitialized: every parameter is filled from the file (tied = one Parameter)
        load_weights(model, ckpt / "model.safetensors")
    model = model.to(device).eval()
    tokenizer = None
    if with_tokenizer and (ckpt / "tokenizer").is_dir():
        from zerollm.tokenizer.base import load_tokenizer
        tokenizer = load_tokenizer(ckpt / "tokenizer")
    return model, tokenizer, ckpt


def load_trainer_state(ckpt: str | Path) -> dict:
    path = Path(ckpt) / "trainer_state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; this checkpoint cannot be resumed (weights only)")
    return torch.load(path, map_location="cpu", weights_only=True)
