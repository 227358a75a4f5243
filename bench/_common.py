"""Shared helpers for the benchmarks (not part of the library): data, timing, machine description."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZEROLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def median(xs):
    return statistics.median(xs)


class CharData:
    """nanoGPT's char-level tiny Shakespeare: 90/10 split, random windows (its get_batch), as a batch
    source for zerollm's training loop (next_batch / state_dict / load_state_dict)."""

    def __init__(self, batch_size: int, block_size: int, seed: int = 1337, split: str = "train"):
        text = (SHARED / "tinyshakespeare" / "input.txt").read_text()
        chars = sorted(set(text))
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}
        data = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        n = int(0.9 * len(data))
        self.data = data[:n] if split == "train" else data[n:]
        self.batch_size, self.block_size = batch_size, block_size
        self.gen = torch.Generator().manual_seed(seed)

    def next_batch(self):
        ix = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.gen)
        x = torch.stack([self.data[i:i + self.block_size] for i in ix])
        y = torch.stack([self.data[i + 1:i + 1 + self.block_size] for i in ix])
        return x, y

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, s):
        self.gen.set_state(s["gen"])


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0
