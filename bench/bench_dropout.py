"""Dropout on CPU: zerollm's mask (model/dropout.py, three 16-bit uniforms per 64-bit draw) beside
torch's F.dropout (one Bernoulli draw per element), forward + backward on a translation step's hidden-state
shape. Prints the median milliseconds of each and the ratio.

    python bench/bench_dropout.py [--threads 2] [--shape 181 11 256] [--p 0.1]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from zerollm.model.dropout import dropout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs="+", default=[181, 11, 256])
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(*args.shape, requires_grad=True)
    fns = {"zerollm dropout": lambda: dropout(x, args.p, True), "torch F.dropout": lambda: F.dropout(x, args.p, True)}
    times = {k: [] for k in fns}
    for _ in range(args.repeats):  # alternate, so machine load falls on both alike
        for k, f in fns.items():
            t0 = time.perf_counter()
            f().sum().backward()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[10:]) * 1e3 for k, v in times.items()}
    print(f"shape {tuple(args.shape)}, p {args.p}, {torch.get_num_threads()} thread(s), forward + backward:")
    for k, v in med.items():
        print(f"  {k}: {v:.3f} ms")
    print(f"  F.dropout / ours: {med['torch F.dropout'] / med['zerollm dropout']:.2f}x")


if __name__ == "__main__":
    main()
