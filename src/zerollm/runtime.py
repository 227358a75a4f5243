"""Where and how a process runs: the device, the number of CPU threads, and glibc's malloc.

Every stage that trains or serves calls `setup_runtime(device, d_model=...)` once: it picks the device
("auto" → cuda, mps, cpu) and, for wide models, tunes malloc as below. `--threads N` (cli.py) goes through
`set_threads`.

Malloc: give freed tensor memory back to the OS on Linux/glibc, so peak RSS measures what training holds.

PyTorch's CPU allocator is plain malloc. glibc serves large blocks with mmap (returned to the OS on free)
but raises its mmap threshold dynamically — after a freed mmap'd block of size S every block up to S comes
from the heap instead (up to 32 MiB on 64-bit), where freed activations stay resident and fragment. A
training step allocates and frees activation blocks of a few MiB each, so after the first step the process
keeps several hundred MiB it no longer uses. Measured on the 76M-parameter LoRA run of
examples/posttrain_demo.py: peak RSS 1,348 MiB with the dynamic threshold, 886 MiB with a fixed one (full
fine-tuning 1,977 → 1,781 MiB).

`release_freed_memory()` fixes the threshold (mallopt M_MMAP_THRESHOLD, which also turns the dynamic
adjustment off) so blocks ≥ `threshold` bytes are mmap'd and unmapped on free. Smaller blocks stay on the
heap as before. It is a no-op off glibc. Set ZEROLLM_MMAP_THRESHOLD=0 to keep glibc's default.

The price is a page fault per fresh 4 KiB of every large allocation (the kernel zeroes each mmap). Matmul
work grows with d_model times the bytes allocated, so the overhead shrinks as 1/d_model: for the 0.89M-
parameter demo model (d_model 128) it made training steps up to ~1.5-2× slower (measured on the loaded
2-core box), while its activations are a few MiB anyway. Passing `d_model` applies the setting only from
`MIN_D_MODEL` up.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

M_MMAP_THRESHOLD = -3  # glibc malloc.h
DEFAULT_THRESHOLD = 1 << 20  # 1 MiB: activations of all but tiny models go through mmap
MIN_D_MODEL = 512  # narrower models: allocation cost matters more than a few MiB of retained heap

_applied: list[int] = []


def release_freed_memory(threshold: int | None = None, d_model: int | None = None) -> bool:
    """Fix glibc's mmap threshold (bytes; default 1 MiB, or $ZEROLLM_MMAP_THRESHOLD). True if applied.
    With `d_model` below MIN_D_MODEL nothing is changed."""
    if d_model is not None and d_model < MIN_D_MODEL:
        return False
    if threshold is None:
        env = os.environ.get("ZEROLLM_MMAP_THRESHOLD", "")
        try:
            threshold = int(env) if env else DEFAULT_THRESHOLD
        except ValueError:
            raise ValueError(f"ZEROLLM_MMAP_THRESHOLD={env!r}: expected a number of bytes") from None
    if threshold <= 0 or not sys.platform.startswith("linux"):
        return False
    if _applied and _applied[-1] == threshold:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, int(threshold)) != 1:
        return False
    _applied.append(threshold)
    return True


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' → cuda if present, else mps, else cpu. Never hard-coded elsewhere."""
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_auto_threads: list[bool] = [False]
_auto_threads_from: list[int] = [torch.get_num_threads()]


def set_threads(n: int | None) -> None:
    """torch CPU threads for this process. None (no --threads): training measures which is faster, 1 thread
    or all cores (`ThreadPicker`); else exactly `n`. On a machine where other jobs hold cores, 1 avoids
    stalls: every parallel region waits for its slowest thread."""
    _auto_threads[0] = n is None
    if n is None:
        _auto_threads_from[0] = torch.get_num_threads()
        return
    if n < 1:
        raise ValueError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)


def end_auto_threads() -> None:
    """Back to torch's thread count from before a measured command, and no more measuring in this process."""
    if _auto_threads[0]:
        torch.set_num_threads(_auto_threads_from[0])
    _auto_threads[0] = False


class ThreadPicker:
    """Pick the CPU thread count by measuring: the first `trials` training steps run on 1 thread, the next
    `trials` on all cores, and the rest on whichever had the faster median step. (On a busy 2-core machine
    2 threads made small steps 2-10x slower; on a quiet one they are faster.) The choice is stored in the
    checkpoint and reused on --resume: gradients differ in their last bits between thread counts, so a
    resumed run must keep the count of the run it continues to stay bit-exact; for the same reason the choice
    is not re-checked later in a run."""

    def __init__(self, n_max: int, trials: int = 3):
        self.n_max, self.trials, self.choice = n_max, trials, None
        self.times: dict[int, list[float]] = {1: [], n_max: []}

    @classmethod
    def for_run(cls, device: torch.device, saved: int | None = None) -> "ThreadPicker | None":
        """A picker when measuring applies (CLI without --threads, CPU, several cores, a fresh run); a
        resumed run gets its saved count instead."""
        if saved:
            torch.set_num_threads(int(saved))
            return None
        n = torch.get_num_threads()
        return cls(n) if _auto_threads[0] and device.type == "cpu" and n > 1 else None

    def candidate(self) -> int:
        return self.choice or (1 if len(self.times[1]) < self.trials else self.n_max)

    def before_step(self) -> None:
        torch.set_num_threads(self.candidate())

    def after_step(self, seconds: float) -> None:
        if self.choice is not None:
            return
        self.times[self.candidate()].append(seconds)
        if len(self.times[self.n_max]) >= self.trials:
            median = {n: sorted(t)[len(t) // 2] for n, t in self.times.items()}
            self.choice = min(median, key=median.get)


def setup_runtime(device: str = "auto", d_model: int | None = None) -> torch.device:
    """What every training and serving stage does first: the device, and (for models of width `d_model`)
    freed activation blocks go back to the OS instead of piling up (`release_freed_memory`)."""
    if d_model is not None:
        release_freed_memory(d_model=d_model)
    return pick_device(device)


__all__ = ["release_freed_memory", "pick_device", "set_threads", "end_auto_threads", "ThreadPicker", "setup_runtime", "DEFAULT_THRESHOLD",
           "MIN_D_MODEL"]
