"""`zerollm quickstart` on a quiet machine and beside one busy process, in one run (issue 18 item 8).

On a 2-core machine where another job holds a core, two torch threads stall small matmuls (every parallel
region waits for its slowest thread). Without `--threads`, the training loop measures steps at 1 thread and at
all cores and keeps the faster, re-checking every 200 steps (runtime.ThreadPicker). This bench runs the
quickstart as a new user would (the CLI, no --threads):

1. on the machine as it is (nothing else of ours running),
2. beside one CPU-bound process (a Python busy loop, one core),
3. optionally (--forced) beside the busy process with --threads set to all cores: what the picker avoids.

It prints the validation bits per byte, steps trained and the thread count the run chose for each.

    python bench/bench_busy.py [--minutes 5] [--forced]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from zerollm.train.checkpoint import load_trainer_state  # noqa: E402

BUSY = "while True: pass"


def quickstart(out: Path, minutes: float, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "zerollm.cli"] + (["--threads", str(threads)] if threads else [])
    cmd += ["quickstart", "--minutes", str(minutes), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"quickstart failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "val_bpb" in r]
    bpb = evals[-1]["val_bpb"] if evals else None
    steps = max((r.get("step", 0) for r in rows), default=0)
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    chosen = load_trainer_state(ckpts[-1]).get("threads") if ckpts else None
    return {"bpb": bpb, "steps": steps, "threads": chosen or threads, "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--forced", action="store_true", help="also: beside the busy process with --threads all")
    args = ap.parse_args()
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="zerollm-busy-"))
    results = {"quiet": quickstart(work / "quiet", args.minutes, None)}
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(2)
        results["beside one busy process"] = quickstart(work / "busy", args.minutes, None)
        if args.forced:
            results[f"busy, --threads {os.cpu_count()}"] = quickstart(work / "forced", args.minutes, os.cpu_count())
    finally:
        busy.kill()
        busy.wait()
    print("| case | val bits/byte | steps | threads | wall s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        bpb = f"{r['bpb']:.3f}" if r["bpb"] is not None else "?"
        print(f"| {name} | {bpb} | {r['steps']} | {r['threads']} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
