"""`zerollm checkpoint consolidate`: a sharded (FSDP / DCP) checkpoint → one plain checkpoint directory.

    zerollm checkpoint consolidate RUN_OR_CKPT --out DIR

Under `train.parallel=fsdp` every rank writes only its shards (train/checkpoint.py: `dcp/`). The engine,
`export`, Hugging Face conversion and `--model DIR` read one `model.safetensors`; this gathers every
shard in one process (no GPU, no process group) into exactly that, with the config and tokenizer. A run
directory means its latest checkpoint. Resuming training does not need this: a sharded checkpoint resumes
directly at any world size, with or without FSDP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.artifacts import prepare_out
from zerollm.train.checkpoint import consolidate_checkpoint, is_sharded_checkpoint


@dataclass
class ConsolidateConfig:
    path: str = field(default="", metadata={"positional": True, "metavar": "RUN_OR_CKPT",
                                            "help": "sharded checkpoint dir, or a run dir (its latest checkpoint)"})
    out: str = field(default="", metadata={"required": True, "help": "checkpoint directory to write"})
    overwrite: bool = False


def sharded_checkpoint_of(path: str | Path) -> Path:
    """The sharded checkpoint `path` names: itself, or a run's (or checkpoints/ dir's) latest one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or run directory")
    if is_sharded_checkpoint(path):
        return path
    for ckdir in (path / "checkpoints", path):
        latest = ckdir / "latest"
        if latest.is_file() and is_sharded_checkpoint(ckdir / latest.read_text().strip()):
            return ckdir / latest.read_text().strip()
    raise ValueError(f"{path}: not a sharded checkpoint (no dcp/ directory; the latest checkpoint of a run "
                     f"trained with train.parallel=ddp already has model.safetensors)")


def consolidate(path: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    ckpt = sharded_checkpoint_of(path)
    prepare_out(out, "checkpoint", overwrite=overwrite, inputs=[ckpt])
    return consolidate_checkpoint(ckpt, out)


__all__ = ["consolidate", "ConsolidateConfig"]
