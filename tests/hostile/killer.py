"""Run the zerollm CLI and SIGKILL the process itself at a chosen moment (the kill -9 tests and
bench/bench_kill9.py): `python killer.py KIND N SECONDS zerollm-args...`.

KIND N: die right after the N-th directory of that artifact kind is fully written to its temporary sibling,
before the rename that publishes it (the worst moment: a full-size leftover). SECONDS > 0: die after that
many seconds instead, wherever the process is (N is ignored). The patch goes in before any other zerollm
module is imported, so every `from zerollm.artifacts import atomic_dir` gets it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from zerollm import artifacts

kind, n, seconds, argv = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
real, seen = artifacts.atomic_dir, [0]


@contextlib.contextmanager
def dying_atomic_dir(path, k):
    with real(path, k) as tmp:
        yield tmp
        if k == kind and seconds <= 0:
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)


artifacts.atomic_dir = dying_atomic_dir
if seconds > 0:
    threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()

from zerollm import cli  # noqa: E402  (after the patch)

sys.exit(cli.main(argv))
