"""Peak memory of loading and converting a GPT-2 124M Hugging Face checkpoint (fp32, 498 MB of weights).

Each measurement runs in a fresh Python process and reports that process's peak RSS (VmHWM) and its RSS
right after the imports (torch alone is ~200 MB), so the figure is what the operation itself adds:

    load HF dir        zerollm.loading.load(hf_dir)   (what every --model HF_DIR does)
    convert            zerollm.stages.convert.convert(hf_dir, out)          (streams tensor by tensor)
    load converted     load(converted_dir)
    naive reference    safetensors.torch.load_file + Transformer(cfg) + load_state_dict (what we avoid)

The target (issue 3): peak RSS below 2x the weight bytes. The checkpoint is written by our own HF exporter
from random weights (no network, no transformers needed); `--transformers` writes it with
`GPT2LMHeadModel.save_pretrained` instead.

    python bench/bench_load_memory.py [--preset gpt2-124m] [--transformers] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys
def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
op, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
import torch
from zerollm.stages.convert import convert
from zerollm.loading import load
after_imports = status_kb("VmRSS")
if op == "load":
    loaded = load(src)
    model, tok = loaded.model, loaded.tokenizer
elif op == "convert":
    convert(src, out)
elif op == "naive":
    from safetensors.torch import load_file
    from zerollm.interop.hf import ImportPlan
    from zerollm.model.transformer import Transformer
    plan = ImportPlan(src)
    sd = load_file(src + "/model.safetensors")
    model = Transformer(plan.cfg)
    ours = {}
    for rule in plan.rules:
        ours.update(zip(rule.ours, rule.to_ours([sd[plan.stored[n]] for n in rule.theirs])))
    model.load_state_dict(ours)
# VmHWM: this address space's peak RSS. (ru_maxrss would also count the parent's RSS at fork time: Linux
# keeps it across exec, so a big parent inflates it.)
peak = status_kb("VmHWM")
print(json.dumps({"after_imports_kb": after_imports, "peak_kb": peak}))
"""


def run(op: str, src: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, op, str(src), str(out)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_hf_dir(path: Path, preset: str, use_transformers: bool) -> None:
    import torch

    from zerollm.config import model_config_from_preset
    from zerollm.model.transformer import Transformer

    torch.manual_seed(0)
    if use_transformers:
        from transformers import GPT2Config, GPT2LMHeadModel

        GPT2LMHeadModel(GPT2Config()).save_pretrained(path)
        return
    from zerollm.interop.hf import export_hf

    export_hf(Transformer(model_config_from_preset(preset)), None, path)


def weight_bytes(path: Path) -> int:
    from zerollm.interop.weights import ST_DTYPES, read_safetensors_header

    header, _, _ = read_safetensors_header(path / "model.safetensors")
    return sum(ST_DTYPES[h["dtype"]][1] * math.prod(h["shape"]) for h in header.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2-124m")
    ap.add_argument("--transformers", action="store_true", help="write the checkpoint with transformers")
    ap.add_argument("--keep", default=None, help="work directory to keep (default: a temp dir, removed)")
    ap.add_argument("--make", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_hf_dir(Path(args.make), args.preset, args.transformers)
        return
    work = Path(args.keep or tempfile.mkdtemp(prefix="zerollm-mem-"))
    try:
        hf_dir, conv = work / "hf", work / "converted"
        if not (hf_dir / "config.json").is_file():  # in a child, so this process stays small
            subprocess.run([sys.executable, __file__, "--make", str(hf_dir), "--preset", args.preset]
                           + (["--transformers"] if args.transformers else []), check=True)
        wb = weight_bytes(hf_dir)
        print(f"checkpoint: {hf_dir} ({wb / 2**20:.0f} MiB of weights)")
        rows = [("load HF dir", run("load", hf_dir, conv)), ("convert HF -> zerollm", run("convert", hf_dir, conv)),
                ("load converted", run("load", conv, conv)), ("naive (load_file + load_state_dict)",
                                                              run("naive", hf_dir, conv))]
        print("| operation | peak RSS (MiB) | after imports (MiB) | peak / weight bytes | (peak - imports) / weights |")
        print("|---|---|---|---|---|")
        for name, r in rows:
            peak, base = r["peak_kb"] * 1024, r["after_imports_kb"] * 1024
            print(f"| {name} | {peak / 2**20:.0f} | {base / 2**20:.0f} | {peak / wb:.2f}x | {(peak - base) / wb:.2f}x |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
