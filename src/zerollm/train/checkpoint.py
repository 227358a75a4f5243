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
previous checkpoint intact and never a half-written one. Reading checkpoints back is zerollm/loading.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zerollm.artifacts import atomic_dir, atomic_path, atomic_write_text, write_manifest
from zerollm.config import ModelConfig
from zerollm.tokenizer.base import save_affixes


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


def save_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, model_cfg: ModelConfig, *,
                    tokenizer: Any = None, chat_template: str | None = None, trainer_state: dict | None = None,
                    config_yaml: str | None = None, step: int = 0, tokens_seen: int = 0, extra: dict | None = None) -> Path:
    ckpt_dir = Path(ckpt_dir)
    with atomic_dir(ckpt_dir, "checkpoint") as tmp:
        atomic_write_text(tmp / "config.json", json.dumps(model_cfg.to_dict(), indent=2) + "\n")
        save_weights(model, tmp / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
            save_affixes(tokenizer, tmp / "tokenizer")  # an imported tokenizer's BOS/EOS rule travels along
            if chat_template:  # an imported model's own: every checkpoint, mid-run ones too, chats in it
                from zerollm.interop.hf_tokenizer import CHAT_TEMPLATE_FILE

                atomic_write_text(tmp / "tokenizer" / CHAT_TEMPLATE_FILE, chat_template)
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


def load_trainer_state(ckpt: str | Path) -> dict:
    path = Path(ckpt) / "trainer_state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; this checkpoint cannot be resumed (weights only)")
    return torch.load(path, map_location="cpu", weights_only=True)
