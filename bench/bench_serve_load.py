"""Load test of `zerollm serve` on loopback: concurrent streamed chat requests against a small model.

    python bench/bench_serve_load.py [--clients 16] [--requests 20] [--max-tokens 64]

1. Starts `zerollm serve` (a subprocess, as users run it) on a small random model saved as a checkpoint.
2. Load: `--clients` threads each send `--requests` streamed chat requests back to back (bounded: every
   request has a fixed token budget, `ignore_eos`, and a timeout). Reports errors, p50/p99 time to first
   token (first content delta) and total generated tokens/s.
3. Batching: aggregate tokens/s with 8 concurrent clients vs 1 client (same per-request work). With
   continuous batching the 8 clients share decode steps, so the goal is >= 4x.
4. `--hostile` (issue 18): during step 2, one client keeps sending oversized JSON schemas (minLength 1e9, a
   300-deep array, a 20,000-value enum, minItems 1e6) and another 50 MB chunked bodies. Those must get 4xx,
   the normal clients 0 errors, and the server's peak RSS (VmHWM) stays under `--rss-bound-mb`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.checkpoint import save_checkpoint

TEXT = ("The weather in Paris is sunny. The answer is 42. Large language models predict the next token. "
        "こんにちは。今日は良い天気ですね。") * 200


def make_model(root: Path, d_model: int, n_layer: int) -> Path:
    tok = train_bpe([TEXT], vocab_size=1024, show_progress=False)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=n_layer, n_head=4, d_model=d_model, max_seq_len=512)
    return save_checkpoint(root / "bench-serve" / "checkpoints" / "step-00000001", Transformer(cfg), cfg, tokenizer=tok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_request(url: str, i: int, max_tokens: int) -> tuple[float, int, float]:
    """(time to first token, completion tokens, total seconds) of one streamed chat request."""
    body = {"model": "bench-serve", "messages": [{"role": "user", "content": f"Tell me about request {i}."}],
            "max_tokens": max_tokens, "temperature": 1.0, "seed": i, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    t0, ttft, tokens = time.perf_counter(), None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and ttft is None:
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens, time.perf_counter() - t0


def load(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    ttfts, tokens, errors = [], [], []
    lock = threading.Lock()

    def worker(c: int):
        for k in range(requests):
            try:
                t, n, _ = one_request(url, c * 1000 + k, max_tokens)
                with lock:
                    ttfts.append(t)
                    tokens.append(n)
            except Exception as e:  # counted and reported
                with lock:
                    errors.append(repr(e))
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts.sort()
    pct = (lambda q: ttfts[min(len(ttfts) - 1, int(q * len(ttfts)))] * 1000) if ttfts else (lambda q: float("nan"))
    return {"clients": clients, "requests": clients * requests, "errors": len(errors), "error_samples": errors[:3],
            "ttft_p50_ms": pct(0.5), "ttft_p99_ms": pct(0.99), "tokens": sum(tokens), "wall_s": wall,
            "tokens_per_s": sum(tokens) / wall, "ttft_mean_ms": statistics.mean(ttfts) * 1000 if ttfts else None}


def deep_array(levels: int) -> dict:
    schema = node = {"type": "array"}
    for _ in range(levels):
        node["items"] = {"type": "array"}
        node = node["items"]
    return schema


HOSTILE_SCHEMAS = [{"type": "string", "minLength": 10 ** 9}, deep_array(300),
                   {"enum": [f"v{i}" for i in range(20_000)]}, {"type": "array", "minItems": 10 ** 6}]


def hostile_clients(url: str, stop: threading.Event, statuses: dict) -> list[threading.Thread]:
    """Two clients: oversized schemas in a loop, and 50 MB chunked bodies in a loop; statuses counted."""
    def record(key):
        with threading.Lock():
            statuses[key] = statuses.get(key, 0) + 1

    def schemas():
        k = 0
        while not stop.is_set():
            body = {"model": "bench-serve", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "x", "schema": HOSTILE_SCHEMAS[k % 4]}}}
            try:
                record(f"schema {httpx.post(url + '/v1/chat/completions', json=body, timeout=120).status_code}")
            except httpx.HTTPError as e:
                record(f"schema {type(e).__name__}")
            k += 1

    def chunked():
        def body():
            for _ in range(50):
                yield b" " * (1 << 20)
        while not stop.is_set():
            try:
                r = httpx.post(url + "/v1/completions", content=body(), timeout=120,
                               headers={"content-type": "application/json"})
                record(f"50MB chunked {r.status_code}")
            except httpx.HTTPError as e:  # the server may close the connection after its 413
                record(f"50MB chunked {type(e).__name__}")
    threads = [threading.Thread(target=schemas), threading.Thread(target=chunked)]
    for t in threads:
        t.start()
    return threads


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server (OMP_NUM_THREADS); on a "
                    "busy 2-core machine 1 avoids thread-pool stalls that make small matmuls 10-20x slower")
    ap.add_argument("--batch-requests", type=int, default=6, help="requests per client in the 1-vs-8 comparison")
    ap.add_argument("--hostile", action="store_true", help="add a large-schema client and a 50 MB chunked-body "
                    "client during the load (step 4)")
    ap.add_argument("--rss-bound-mb", type=float, default=1500, help="--hostile: the server's peak RSS bound")
    ap.add_argument("--skip-batching", action="store_true", help="skip step 3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_model(Path(tmp), args.d_model, args.n_layer)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "zerollm.cli", "serve", "--model", str(ckpt), "--port",
                                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("server did not start: " + (proc.stderr.read().decode() if proc.poll() else ""))
                time.sleep(0.2)
            load(url, 2, 2, 8)  # warm-up
            n_params = sum(p.numel() for p in Transformer(ModelConfig(
                vocab_size=1024, n_layer=args.n_layer, n_head=4, d_model=args.d_model, max_seq_len=512)).parameters())
            print(f"model: d_model={args.d_model} n_layer={args.n_layer} ({n_params / 1e6:.1f}M params), "
                  f"server torch threads={args.threads}, max_tokens={args.max_tokens}")
            stop, statuses = threading.Event(), {}
            rss_before = rss_mb(proc.pid, "VmRSS")
            hostile = hostile_clients(url, stop, statuses) if args.hostile else []
            big = load(url, args.clients, args.requests, args.max_tokens)
            stop.set()
            for t in hostile:
                t.join()
            if args.hostile:
                peak = rss_mb(proc.pid)
                print(f"hostile clients: {dict(sorted(statuses.items()))}; server RSS {rss_before:.0f} MB before, "
                      f"peak {peak:.0f} MB (bound {args.rss_bound_mb:.0f} MB: {'ok' if peak < args.rss_bound_mb else 'OVER'})")
            print(f"{big['clients']} clients x {args.requests} streamed requests: {big['errors']} errors, "
                  f"TTFT p50 {big['ttft_p50_ms']:.0f} ms / p99 {big['ttft_p99_ms']:.0f} ms, "
                  f"{big['tokens']} tokens in {big['wall_s']:.1f} s = {big['tokens_per_s']:.0f} tokens/s")
            if big["errors"]:
                print("  errors:", big["error_samples"])
            if args.skip_batching:
                return
            one = load(url, 1, args.batch_requests, args.max_tokens)
            eight = load(url, 8, args.batch_requests, args.max_tokens)
            print(f"1 client: {one['tokens_per_s']:.0f} tokens/s; 8 clients: {eight['tokens_per_s']:.0f} tokens/s "
                  f"-> {eight['tokens_per_s'] / one['tokens_per_s']:.1f}x (goal >= 4x); "
                  f"errors {one['errors'] + eight['errors']}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
