"""`TokenLoader`: (x, y) batches of token windows from a shards directory, DDP-aware and resumable.

    shards dir ──np.memmap per shard──▶ windows of T+1 tokens ──▶ x = w[:-1], y = w[1:]  (B, T) int64

Windows never cross a shard boundary: each shard of n tokens offers n - T window starts, and the
split's windows are all shards' windows in order (`_Windows`). With 50M-token shards this loses
nothing that matters; the last T tokens of each shard are still seen as targets of earlier windows.

Random mode (training): batch k is a pure function of (seed, k). Row j of the *global* batch
(B·world_size rows) starts at window `hash(seed, k, j) mod num_windows` (a counter-based RNG:
splitmix64 in numpy, identical on every machine and numpy version). Rank r takes global rows
[r·B, (r+1)·B). Consequences the training loop relies on:
  * exact resume: `state_dict()` is just the batch counter (and the seed);
  * world_size=2 with B/2 per rank yields the same global batch, split in halves between ranks, as
    world_size=1 with B, so changing the number of processes does not change the data stream.
Windows are sampled with replacement at any token offset (not aligned to documents).

Sequential mode (evaluation): windows at offsets 0, T, 2T, ... of each shard (stride T, so every
token is predicted once), in order; `iter_eval_batches(max_batches)` walks them from the start each
time it is called, in global batches split between ranks like above. Every rank yields the same
number of full batches; the last global batch wraps around to the first windows to stay full.

`tokens` and `bytes_per_token` (from the manifest) turn a mean loss in nats/token into bits per byte:
bpb = loss / ln(2) / bytes_per_token.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zerollm.artifacts import read_manifest
from zerollm.data.shards import open_shard, parse_dtype

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, vectorized over uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def window_hash(seed: int, batch_index: int, rows: np.ndarray) -> np.ndarray:
    """Uniform 64-bit values for (seed, batch_index, row) triples; rows is an int array."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.full(rows.shape, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64))
        h = _splitmix64(h ^ np.uint64(batch_index & 0xFFFFFFFFFFFFFFFF))
        return _splitmix64(h ^ rows.astype(np.uint64))


class _Windows:
    """Index of the (T+1)-token windows of a split: window i -> (shard, offset)."""

    def __init__(self, shards: list[np.ndarray], seq_len: int, stride: int):
        self.shards = shards
        self.seq_len = seq_len
        # starts 0, stride, 2*stride, ... while start + T + 1 <= n
        counts = [max(0, (len(s) - seq_len - 1) // stride + 1) for s in shards]
        self.stride = stride
        self.cum = np.cumsum([0] + counts)          # cum[k] = windows before shard k
        self.count = int(self.cum[-1])

    def gather(self, index: np.ndarray) -> np.ndarray:
        """(rows,) window indices -> (rows, T+1) int64 tokens."""
        shard = np.searchsorted(self.cum, index, side="right") - 1
        out = np.empty((len(index), self.seq_len + 1), dtype=np.int64)
        for row, (k, i) in enumerate(zip(shard, index)):
            start = int(i - self.cum[k]) * self.stride
            out[row] = self.shards[k][start:start + self.seq_len + 1]
        return out


class TokenLoader:
    """Batches of (x, y) int64 tensors of shape (batch_size, seq_len) from a shards directory.

    batch_size is per rank; the global batch is batch_size * world_size rows."""

    def __init__(self, shards_dir: str | Path, split: str = "train", batch_size: int = 8,
                 seq_len: int = 256, seed: int = 0, rank: int = 0, world_size: int = 1,
                 mode: str = "random", device: str | torch.device | None = None):
        if mode not in ("random", "sequential"):
            raise ValueError(f"mode must be 'random' or 'sequential', got {mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {seq_len}")
        self.shards_dir = Path(shards_dir)
        self.manifest = read_manifest(self.shards_dir, kind="shards")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.split, self.mode = split, mode
        self.batch_size, self.seq_len = batch_size, seq_len
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device) if device is not None else None
        self.dtype = parse_dtype(self.manifest["dtype"])
        self.vocab_size = int(self.manifest["vocab_size"])
        self.eos_id = self.manifest.get("eos_id")
        entries = self.manifest.get(split, [])
        if not entries:
            raise ValueError(f"{self.shards_dir}: the {split!r} split is empty "
                             f"(data prepare with val_fraction > 0 to get a val split)")
        self._shards = [open_shard(self.shards_dir / e["file"], self.dtype, e["tokens"]) for e in entries]
        self.tokens = sum(int(e["tokens"]) for e in entries)
        stats = self.manifest.get("splits", {}).get(split, {})
        self.bytes_per_token = stats.get("bytes_per_token") or self.manifest["totals"]["bytes_per_token"]
        self._eval_windows = _Windows(self._shards, seq_len, stride=seq_len)
        self._windows = self._eval_windows if mode == "sequential" else _Windows(self._shards, seq_len, 1)
        if self._windows.count == 0:
            longest = max(len(s) for s in self._shards)
            raise ValueError(f"{self.shards_dir}: the {split!r} split has no window of seq_len+1 = "
                             f"{seq_len + 1} tokens (longest shard: {longest} tokens); "
                             f"use a shorter seq_len or more data")
        self.batch_index = 0                    # global batches produced by next_batch()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def tokens_per_batch(self) -> int:
        """Tokens of x per rank per batch (B * T)."""
        return self.batch_size * self.seq_len

    @property
    def num_windows(self) -> int:
        return self._windows.count

    # -- batches -----------------------------------------------------------------------------
    def _global_rows(self) -> np.ndarray:
        """Global row numbers of this rank's part of a global batch."""
        return np.arange(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def window_indices(self, batch_index: int) -> np.ndarray:
        """The window indices this rank reads for global batch `batch_index` (pure function)."""
        rows = self._global_rows()
        if self.mode == "random":
            return (window_hash(self.seed, batch_index, rows) % np.uint64(self.num_windows)).astype(np.int64)
        return (batch_index * self.global_batch_size + rows) % self.num_windows

    def get_batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) of global batch `batch_index` for this rank, without moving the counter."""
        return self._tensors(self._windows.gather(self.window_indices(batch_index)))

    def _tensors(self, w: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(w)                                  # (B, T+1)
        x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()     # (B, T) each
        if self.device is not None and self.device.type != "cpu":
            if self.device.type == "cuda":
                x, y = x.pin_memory(), y.pin_memory()
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y), each (batch_size, seq_len) int64, y[:, t] = x[:, t+1] of the stream."""
        batch = self.get_batch(self.batch_index)
        self.batch_index += 1
        return batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def num_eval_batches(self, max_batches: int | None = None) -> int:
        n = -(-self._eval_windows.count // self.global_batch_size)       # ceil
        return n if max_batches is None else min(n, max_batches)

    def iter_eval_batches(self, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Walk the split once from its start in sequential windows (in either mode; the counter
        of `next_batch` is not touched). Every rank yields the same number of batches."""
        rows = self._global_rows()
        for k in range(self.num_eval_batches(max_batches)):
            index = (k * self.global_batch_size + rows) % self._eval_windows.count
            yield self._tensors(self._eval_windows.gather(index))

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"batch_index": self.batch_index, "seed": self.seed, "mode": self.mode,
                "split": self.split, "seq_len": self.seq_len,
                "global_batch_size": self.global_batch_size,
                "tokenizer_hash": self.manifest.get("tokenizer_hash")}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state_dict()` was taken. The world size may differ as long as the
        global batch size is the same (see module docstring)."""
        changed = [k for k in ("mode", "split", "seq_len", "global_batch_size", "tokenizer_hash")
                   if k in state and state[k] != self.state_dict()[k]]
        if changed:
            warnings.warn(f"TokenLoader resumed with different {', '.join(changed)}: the batches "
                          f"will not continue the saved stream exactly", stacklevel=2)
        self.seed = int(state["seed"])
        self.batch_index = int(state["batch_index"])

    def __repr__(self) -> str:
        return (f"TokenLoader({str(self.shards_dir)!r}, split={self.split!r}, mode={self.mode!r}, "
                f"B={self.batch_size}, T={self.seq_len}, rank={self.rank}/{self.world_size}, "
                f"tokens={self.tokens:,}, batch_index={self.batch_index})")
