"""Shard files: flat arrays of token ids on disk.

A shard is raw little-endian token ids with no header: `uint16` when every id fits (vocab_size <=
65536), else `uint32`. Documents are separated by `<|eos|>` and may continue into the next shard;
the shards of a split, concatenated in order, are that split's token stream. Files are named
`{split}_{index:06d}.bin` (`train_000000.bin`, `val_000000.bin`) and listed with their token counts
in the directory's `manifest.json` (see `prepare.py`), which also records the dtype.

    w = ShardWriter(dir, "train", dtype, shard_tokens=50_000_000)
    w.write(ids)             # any length; rolls over to a new file every `shard_tokens` tokens
    w.close() -> [{"file": "train_000000.bin", "tokens": n}, ...]
    open_shard(path, dtype)  # read-only np.memmap, no copy

Each file is written under a temporary name and renamed when complete, so a shard name on disk
always holds a whole shard; `prepare.py` additionally builds the whole directory atomically.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

DEFAULT_SHARD_TOKENS = 50_000_000      # 100 MB of uint16: big enough to stream, small enough to move


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned dtype that holds every id below `vocab_size`."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    if vocab_size <= 1 << 32:
        return np.dtype("<u4")
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def dtype_name(dtype: np.dtype) -> str:
    """'uint16' or 'uint32' (the manifest spelling)."""
    return np.dtype(dtype).name


def parse_dtype(name: str) -> np.dtype:
    """The manifest spelling back to a little-endian numpy dtype."""
    if name not in ("uint16", "uint32"):
        raise ValueError(f"unknown shard dtype {name!r} (expected uint16 or uint32)")
    return np.dtype("<u2" if name == "uint16" else "<u4")


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


def open_shard(path: str | Path, dtype: np.dtype | str, tokens: int | None = None) -> np.memmap:
    """Memory-map a shard read-only. If `tokens` is given, check the file holds exactly that many."""
    dtype = parse_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype).newbyteorder("<")
    path = Path(path)
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise ValueError(f"{path}: size {size} is not a multiple of {dtype.itemsize} ({dtype.name})")
    if tokens is not None and size != tokens * dtype.itemsize:
        raise ValueError(f"{path}: holds {size // dtype.itemsize} tokens but the manifest says "
                         f"{tokens}; the shards directory is inconsistent, re-run data prepare")
    if size == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=dtype)  # type: ignore[return-value]
    return np.memmap(path, dtype=dtype, mode="r")


class ShardWriter:
    """Append token ids to `{split}_NNNNNN.bin` files of at most `shard_tokens` tokens each."""

    def __init__(self, directory: str | Path, split: str, dtype: np.dtype | str,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS):
        if shard_tokens <= 0:
            raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
        self.directory = Path(directory)
        self.split = split
        self.dtype = parse_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype).newbyteorder("<")
        self.shard_tokens = shard_tokens
        self.shards: list[dict] = []        # finished shards: {"file", "tokens"}
        self.tokens = 0                     # total written, all shards
        self._file = None
        self._tmp: Path | None = None
        self._in_current = 0

    def write(self, ids) -> None:
        """Append `ids` (array-like of ints), splitting across shard files as needed."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token id out of range for {self.dtype.name}: "
                             f"[{ids.min()}, {ids.max()}]")
        ids = ids.astype(self.dtype, copy=False)
        while ids.size:
            if self._file is None:
                self._open_next()
            room = self.shard_tokens - self._in_current
            chunk, ids = ids[:room], ids[room:]
            self._file.write(chunk.tobytes())
            self._in_current += chunk.size
            self.tokens += chunk.size
            if self._in_current == self.shard_tokens:
                self._finish_current()

    def close(self) -> list[dict]:
        """Finish the last shard; returns the list of `{"file", "tokens"}`."""
        if self._file is not None:
            self._finish_current()
        return list(self.shards)

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); finished shards stay."""
        if self._file is not None:
            self._file.close()
            self._file = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_next(self) -> None:
        name = shard_name(self.split, len(self.shards))
        self._tmp = self.directory / f".{name}.tmp"
        self._file = open(self._tmp, "wb", buffering=1 << 20)
        self._in_current = 0

    def _finish_current(self) -> None:
        name = shard_name(self.split, len(self.shards))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.directory / name)
        self.shards.append({"file": name, "tokens": self._in_current})
