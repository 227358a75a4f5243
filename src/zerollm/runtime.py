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
    2 threads made small steps 2-10x slower; on a quiet one they are faster.) Every `recheck_every` steps the
    other count runs `trials` steps again and wins if its median beats the last `trials` steps of the current
    one: a machine that gets busy (or quiet) mid-run is followed. The current count is stored in the
    checkpoint and reused on --resume. Gradients differ in their last bits between thread counts, so a run
    is bit-exact to its resumed continuation only where both made the same (timing-based) choices; give
    `--threads N` for runs that must be reproducible to the bit."""

    def __init__(self, n_max: int, trials: int = 3, recheck_every: int = 200, choice: int | None = None):
        self.n_max, self.trials, self.recheck_every, self.choice = n_max, trials, recheck_every, choice
        self.times: dict[int, list[float]] = {1: [], n_max: []}
        self.recent: list[float] = []  # the last `trials` step times at the chosen count
        self.probe: list[float] | None = None  # step times at the other count during a re-check
        self.since_check = 0

    @classmethod
    def for_run(cls, device: torch.device, saved: int | None = None) -> "ThreadPicker | None":
        """A picker when measuring applies (CLI without --threads, CPU, several cores); a resumed run starts
        from its saved count (and keeps re-checking it when measuring applies)."""
        n = torch.get_num_threads()  # all cores (no --threads given), before a resumed count is set
        if saved:
            torch.set_num_threads(int(saved))
        if not (_auto_threads[0] and device.type == "cpu" and max(n, int(saved or 0)) > 1):
            return None
        return cls(max(n, int(saved or 0)), choice=int(saved) if saved else None)

    def _other(self) -> int:
        return 1 if self.choice == self.n_max else self.n_max

    def candidate(self) -> int:
        if self.choice is None:
            return 1 if len(self.times[1]) < self.trials else self.n_max
        return self._other() if self.probe is not None else self.choice

    def before_step(self) -> None:
        torch.set_num_threads(self.candidate())

    def after_step(self, seconds: float) -> None:
        median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        if self.choice is None:  # the first measurement
            self.times[self.candidate()].append(seconds)
            if len(self.times[self.n_max]) >= self.trials:
                self.choice = min((1, self.n_max), key=lambda n: median(self.times[n]))
        elif self.probe is not None:  # a re-check: the other count's steps
            self.probe.append(seconds)
            if len(self.probe) >= self.trials:
                if self.recent and median(self.probe) < median(self.recent):
                    self.choice = self._other()
                    self.recent = list(self.probe)
                self.probe, self.since_check = None, 0
        else:
            self.recent = (self.recent + [seconds])[-self.trials:]
            self.since_check += 1
            if self.recheck_every and self.since_check >= self.recheck_every:
                self.probe = []


def setup_runtime(device: str = "auto", d_model: int | None = None) -> torch.device:
    """What every training and serving stage does first: the device, and (for models of width `d_model`)
    freed activation blocks go back to the OS instead of piling up (`release_freed_memory`)."""
    if d_model is not None:
        release_freed_memory(d_model=d_model)
    return pick_device(device)


__all__ = ["release_freed_memory", "pick_device", "set_threads", "end_auto_threads", "ThreadPicker", "setup_runtime", "DEFAULT_THRESHOLD",
           "MIN_D_MODEL"]
