"""kill -9 at many points of pretrain (and SFT): every checkpoint save and timed kills at random moments.

    python bench/bench_kill9.py [--timed 4] [--seed 0]

For each point: an uninterrupted run, a run killed there (tests/hostile/killer.py: SIGKILL right after a
checkpoint's temporary folder is complete, or after a random number of seconds), then `--resume` (or, when
the kill came before the first checkpoint, `--overwrite`). Checks that the final weights equal the
uninterrupted run's bit for bit and that no `.tmp` / `.old-` leftover survives the restart. The fast
subset of this runs in CI (tests/hostile/test_hostile_kill9.py).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "hostile"))

from test_hostile_kill9 import TRAIN, same_weights, stray, zerollm  # noqa: E402


def prepare(root: Path) -> Path:
    import json

    from conftest import TEXT

    from zerollm.api import data_prepare, tokenizer_train
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": TEXT[i:i + 300]}) + "\n" for i in range(0, len(TEXT), 300)))
    tokenizer_train([str(docs)], root / "tok", vocab_size=300, show_progress=False)
    data_prepare([str(docs)], root / "tok", root / "shards", val_fraction=0.2, show_progress=False)
    return root / "shards"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timed", type=int, default=4, help="kills at random moments (besides one per save)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = prepare(root)
        base = ["pretrain", "--data", shards, *TRAIN]
        t0 = time.perf_counter()
        assert zerollm([*base, "--out", root / "straight"]) == 0
        run_s = time.perf_counter() - t0
        final = "checkpoints/step-00000006"
        points = [("save", k, 0.0) for k in (1, 2, 3)] + [("timed", 0, rng.uniform(2, run_s)) for _ in range(args.timed)]
        ok = 0
        for i, (how, k, seconds) in enumerate(points):
            out = root / f"killed{i}"
            rc = zerollm([*base, "--out", out], "checkpoint" if how == "save" else "none", k, seconds)
            has_ckpt = any((out / "checkpoints").glob("step-*")) if out.exists() else False
            again = zerollm([*base, "--out", out, "--resume" if has_ckpt else "--overwrite"])
            good = again == 0 and not stray(out) and same_weights(root / "straight" / final, out / final)
            ok += good
            what = f"at save {k}" if how == "save" else f"after {seconds:.1f} s"
            print(f"pretrain killed {what}: exit {rc}, restart {'--resume' if has_ckpt else '--overwrite'} -> "
                  f"{'bit-exact, no leftovers' if good else 'FAILED'}")
        print(f"{ok}/{len(points)} kill points recovered exactly (uninterrupted run {run_s:.0f} s)")


if __name__ == "__main__":
    main()
