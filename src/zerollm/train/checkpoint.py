"""Checkpoint directories: weights as safetensors, trainer state for exact resume, written atomically.

    checkpoints/step-00001000/
      manifest.json        kind "checkpoint", step, tokens_seen, model summary
      config.json          ModelConfig (the whole architecture)
      model.safetensors    weights; a tied lm_head is stored once (as the embedding)
      tokenizer/           the tokenizer the model was trained with (a translation model's target side)
      src_tokenizer/       a translation model's source tokenizer, when it has one per side
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
                    config_yaml: str | None = None, step: int = 0, tokens_seen: int = 0, extra: dict | None = None,
                    src_tokenizer: Any = None) -> Path:
    """`src_tokenizer`: an encoder-decoder's source-side tokenizer when it is not `tokenizer` (the target's)."""
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
        if src_tokenizer is not None:
            src_tokenizer.save(tmp / "src_tokenizer")
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


# ----------------------------------------------------------------------------------------------------------
# sharded checkpoints (FSDP): PyTorch Distributed Checkpoint (DCP)
#
#     checkpoints/step-00001000/
#       manifest.json      kind "checkpoint", "sharded": true, "world_size": N
#       dcp/               DCP files: every rank writes its own shards of {"model", "optim"} (+ .metadata)
#       config.json, tokenizer/ (src_tokenizer/), train_config.yaml
#       trainer_state.pt   step, RNG and data position per rank (no optimizer: it is in dcp/)
#
# DCP records each tensor's global shape and which slice each file holds, so a checkpoint saved by N ranks
# loads at any world size (and into an unsharded model: resume at world size 1, `checkpoint consolidate`).


def is_sharded_checkpoint(ckpt: str | Path) -> bool:
    return (Path(ckpt) / "dcp").is_dir()


def _dcp_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}


def save_sharded_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                            model_cfg: ModelConfig, *, is_main: bool, tokenizer: Any = None,
                            chat_template: str | None = None, trainer_state: dict | None = None,
                            config_yaml: str | None = None, step: int = 0, tokens_seen: int = 0,
                            world_size: int = 1, src_tokenizer: Any = None) -> Path:
    """Every rank writes its shards into rank 0's temporary directory; after a barrier rank 0 adds the
    small files and renames the directory into place (a crash leaves the previous checkpoint intact)."""
    import contextlib

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    ckpt_dir = Path(ckpt_dir)
    with contextlib.ExitStack() as stack:
        tmp = [str(stack.enter_context(atomic_dir(ckpt_dir, "checkpoint"))) if is_main else None]
        dist.broadcast_object_list(tmp, src=0)
        tmp_dir = Path(tmp[0])
        dcp.save(_dcp_state(model, opt), checkpoint_id=str(tmp_dir / "dcp"))
        dist.barrier()
        if is_main:
            atomic_write_text(tmp_dir / "config.json", json.dumps(model_cfg.to_dict(), indent=2) + "\n")
            if tokenizer is not None:
                tokenizer.save(tmp_dir / "tokenizer")
                if chat_template:
                    from zerollm.interop.hf_tokenizer import CHAT_TEMPLATE_FILE

                    atomic_write_text(tmp_dir / "tokenizer" / CHAT_TEMPLATE_FILE, chat_template)
            if src_tokenizer is not None:
                src_tokenizer.save(tmp_dir / "src_tokenizer")
            if trainer_state is not None:
                with atomic_path(tmp_dir / "trainer_state.pt") as p:
                    torch.save(trainer_state, p)
            if config_yaml is not None:
                atomic_write_text(tmp_dir / "train_config.yaml", config_yaml)
            n_params = sum(p.numel() for p in model.parameters())  # DTensors report their global size
            write_manifest(tmp_dir, "checkpoint", step=step, tokens_seen=tokens_seen, n_params=n_params,
                           sharded=True, world_size=world_size)
    if is_main:
        atomic_write_text(ckpt_dir.parent / "latest", ckpt_dir.name + "\n")
    return ckpt_dir


def _named_optimizer_state(opt_state: dict, opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    """torch's optimizer state (parameters numbered in param-group order) → keyed by parameter name, the form
    torch.distributed.checkpoint.state_dict understands for any sharding. `opt` was built the same way."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    state = {order[int(i)]: s for i, s in opt_state["state"].items()}
    groups = [{**g, "params": [order[int(i)] for i in g["params"]]} for g in opt_state["param_groups"]]
    return {"state": state, "param_groups": groups}


def restore_checkpoint(ckpt: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Load weights and optimizer state from any checkpoint (sharded DCP or single-file) into `model` as it is
    wrapped now (plain, DDP's module, or FSDP-sharded) and `opt`; returns the trainer state (step, data, RNG)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = load_trainer_state(ckpt)
    if is_sharded_checkpoint(ckpt):  # DCP reshards to whatever this process holds
        import warnings

        sd = _dcp_state(model, opt)
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message=".*single process.*")
            dcp.load(sd, checkpoint_id=str(Path(ckpt) / "dcp"))
        set_model_state_dict(model, sd["model"])
        set_optimizer_state_dict(model, opt, sd["optim"])
        return state
    from safetensors.torch import load_file

    full = StateDictOptions(full_state_dict=True)
    weights = load_file(str(Path(ckpt) / "model.safetensors"))
    if any(hasattr(p, "full_tensor") for p in model.parameters()):  # a single-file checkpoint into FSDP shards
        set_model_state_dict(model, weights, options=full)
        set_optimizer_state_dict(model, opt, _named_optimizer_state(state["optimizer"], opt, model), options=full)
    else:
        from zerollm.loading import load_weights

        load_weights(model, Path(ckpt) / "model.safetensors")
        opt.load_state_dict(state["optimizer"])
    return state


def consolidate_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """A sharded (DCP) checkpoint → a plain checkpoint directory with one model.safetensors (no optimizer):
    what loading.load, export and Hugging Face conversion read. Runs in one process; no model is built —
    the tensors are allocated from DCP's metadata (global shapes) and filled from every rank's files."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    ckpt, out = Path(ckpt), Path(out)
    if not is_sharded_checkpoint(ckpt):
        raise ValueError(f"{ckpt}: not a sharded checkpoint (no dcp/ directory); it already has model.safetensors")
    meta = FileSystemReader(str(ckpt / "dcp")).read_metadata().state_dict_metadata
    weights = {k[len("model."):]: torch.empty(m.size, dtype=m.properties.dtype)
               for k, m in meta.items() if k.startswith("model.") and hasattr(m, "size")}
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load({"model": weights}, checkpoint_id=str(ckpt / "dcp"))
    manifest = json.loads((ckpt / "manifest.json").read_text(encoding="utf-8"))
    with atomic_dir(out, "checkpoint") as tmp:
        shutil.copy2(ckpt / "config.json", tmp / "config.json")
        for tok_dir in ("tokenizer", "src_tokenizer"):
            if (ckpt / tok_dir).is_dir():
                shutil.copytree(ckpt / tok_dir, tmp / tok_dir)
        with atomic_path(tmp / "model.safetensors") as p:
            save_file({k: v.contiguous() for k, v in weights.items()}, str(p), metadata={"format": "pt"})
        write_manifest(tmp, "checkpoint", step=manifest.get("step", 0), tokens_seen=manifest.get("tokens_seen", 0),
                       n_params=sum(v.numel() for v in weights.values()), consolidated_from=str(ckpt))
    return out
