"""Native CPU kernels, compiled on first use: weight-streaming GEMV for fp32, int8, int4 and NF4 weights
(gemv.cpp explains the layouts and why) and a decode step through every decoder block in one call
(decode_step.cpp, used by engine/decode_plan.py).

`load()` builds them with torch's C++ extension tooling (g++ and ninja; 15-50 s once, cached in
`$ZEROLLM_KERNEL_DIR` or ~/.cache/zerollm/kernels, keyed by the source, torch version and build, Python version and CPU flags) and registers
the ops `torch.ops.zerollm_kernels.*`. When there is no compiler, or `ZEROLLM_KERNELS=0`, `load()` returns False
once with a warning, and callers use their pure-PyTorch path: everything works, decoding quantized weights is
just slower.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path

import torch

# rows (batch x new tokens) up to which the native GEMV / decode step beat torch's GEMM; more rows (prompts,
# training batches) take the PyTorch path (engine/native.py, engine/decode_plan.py, model/quant.py)
NATIVE_MAX_ROWS = 64

_HERE = Path(__file__).parent
_SOURCES = [_HERE / "gemv.cpp", _HERE / "decode_step.cpp"]
_HEADERS = [_HERE / "gemv.h"]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_flags() -> bytes:
    """The CPU's feature flags: the build uses -march=native, so a cache shared by different CPUs must not
    hand one machine's binary to another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.encode()
    except OSError:
        pass
    return platform.processor().encode() + platform.machine().encode()


def _torch_build() -> bytes:
    """What makes a compiled extension fit one torch and not another: its version, the exact build (git
    commit, C++ ABI, CUDA) and the Python it runs in. Two environments on one machine with different torch
    builds get different cache folders instead of rebuilding the kernels back and forth."""
    parts = (torch.__version__, getattr(torch.version, "git_version", ""), str(torch.version.cuda),
             str(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", "")), f"py{sys.version_info[0]}.{sys.version_info[1]}")
    return "|".join(parts).encode()


def _build_dir() -> Path:
    key = b"".join(p.read_bytes() for p in _SOURCES + _HEADERS) + _torch_build() + _cpu_flags() + b"-fopenmp"
    digest = hashlib.sha256(key).hexdigest()[:12]
    root = Path(os.environ.get("ZEROLLM_KERNEL_DIR") or Path.home() / ".cache" / "zerollm" / "kernels")
    return root / f"gemv-{digest}"


def load() -> bool:
    """Compile (once) and register the kernels; True when `torch.ops.zerollm_kernels` is usable."""
    if "ok" in _state:
        return bool(_state["ok"])
    with _lock:
        if "ok" in _state:
            return bool(_state["ok"])
        if os.environ.get("ZEROLLM_KERNELS", "1") == "0":
            _state["ok"] = False
            return False
        try:
            from torch.utils.cpp_extension import load as cpp_load

            build = _build_dir()
            build.mkdir(parents=True, exist_ok=True)
            if not any(build.glob("*.so")):
                print(f"zerollm: building the native decode kernels (once, ~30 s) in {build}", file=sys.stderr)
            # -fopenmp: at::parallel_for is an inline OpenMP region in torch's headers, serial without it; the
            # extension then links libgomp.so.1, the soname torch has already loaded, so one thread pool serves both
            flags = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp"]  # no -ffast-math: keep IEEE sums
            cpp_load(name="zerollm_kernels", sources=[str(p) for p in _SOURCES], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                     build_directory=str(build), is_python_module=False, verbose=False)
            _state["ok"] = True
        except Exception as err:  # no compiler / ninja / headers: fall back to PyTorch ops
            warnings.warn(f"zerollm: native kernels unavailable ({type(err).__name__}: {str(err)[:200]}); "
                          "quantized decoding uses the slower PyTorch path", RuntimeWarning, stacklevel=2)
            _state["ok"] = False
    return bool(_state["ok"])


def available() -> bool:
    """True when the kernels are loaded already (does not trigger a build)."""
    return bool(_state.get("ok"))


def ops():
    """The registered ops (call `load()` first)."""
    return torch.ops.zerollm_kernels


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """The activation rounding the quantized-weight kernels apply (gemv.cpp), in PyTorch: blocks of 32 values
    along the last dim, xq = round(x · 127 / absmax), returned dequantized (xq · absmax / 127). For tests and
    for reasoning about the kernels' error."""
    b = x.float().reshape(*x.shape[:-1], -1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    return (torch.round(b * inv) * (amax / 127.0)).reshape(x.shape)


def nf4_kernel_levels(levels: torch.Tensor) -> torch.Tensor:
    """The NF4 levels as the integer kernel uses them: round(127 · level) / 127 (|error| ≤ 1/254)."""
    return torch.round(127.0 * levels) / 127.0
