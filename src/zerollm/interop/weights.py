"""Weight files in and out, frugally: lazy safetensors / `.bin` readers, a streaming safetensors writer,
and models built without a second copy of their weights.

Reading. `SafetensorsSource` validates every file's header up front (so a truncated download or a
corrupted header is reported with the file and the first tensor it cuts, before anything is loaded), then
maps a file only while a handful of tensors are copied out of it (`safe_open` maps the whole file, and the
pages it touches stay resident until the map is closed: keeping one map open for the whole load would
hold a second copy of the weights in RSS). `BinSource` reads PyTorch `.bin` files only through
`torch.load(weights_only=True, mmap=True)`, so no pickled code can run.

Writing. `SafetensorsWriter` writes the header first (names, dtypes, shapes and offsets are known before
any data exists) and then streams one tensor at a time, so exporting or converting never holds more than
the tensor being written on top of the model itself. The file format (safetensors' spec):

    u64 little-endian N | N bytes of JSON header, space-padded to a multiple of 8 | raw tensor bytes
    header = {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}

`empty_model(cfg)` builds a `Transformer` whose parameters are allocated but not initialized (no random
init, no second copy); the caller must then fill every parameter (`load_into` checks that).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from zerollm.artifacts import atomic_path
from zerollm.errors import ZeroLLMError
from zerollm.model.transformer import Transformer

# safetensors dtype tag -> (torch dtype or None if we cannot load it, bytes per element)
ST_DTYPES: dict[str, tuple[torch.dtype | None, int]] = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
    "I64": (None, 8), "I32": (None, 4), "I16": (None, 2), "I8": (None, 1), "U8": (None, 1), "U16": (None, 2),
    "U32": (None, 4), "U64": (None, 8), "BOOL": (None, 1), "F8_E4M3": (None, 1), "F8_E5M2": (None, 1),
}
TORCH_TO_ST = {dt: tag for tag, (dt, _) in ST_DTYPES.items() if dt is not None}
MAX_HEADER = 100 * 2**20  # safetensors' own limit


class InteropError(ZeroLLMError):
    """A bad input file: the message names the file and, where there is one, the tensor."""


def shard_path(index: Path, shard) -> Path:
    """The file a sharded-weights index names, confined to the index's own folder: a bare file name, never
    an absolute path, `..` or a link leading elsewhere (an index must not make us read arbitrary files)."""
    root = index.parent.resolve()
    if not isinstance(shard, str) or not shard or Path(shard).is_absolute() or Path(shard).name != shard:
        raise InteropError(f"{index}: shard {shard!r} must be a file name inside {index.parent}")
    path = index.parent / shard
    if path.resolve().parent != root:
        raise InteropError(f"{index}: shard {shard!r} leads outside {index.parent}")
    return path


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


# ----------------------------------------------------------------------------------------------------------
# reading


def read_safetensors_header(path: str | Path) -> tuple[dict, dict, int]:
    """(tensors {name: {"dtype", "shape", "data_offsets"}}, metadata, data start) of a safetensors file,
    checked against the file size: every tensor's bytes must be inside the file and match its shape."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InteropError(f"{path}: not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise InteropError(f"{path}: corrupted or truncated safetensors file (header claims {n} bytes, "
                                   f"file has {size})")
            raw = f.read(n)
    except OSError as e:
        raise InteropError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise InteropError(f"{path}: corrupted safetensors header ({e})") from None
    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    cut = []  # tensors reaching past the end of the file
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InteropError(f"{path}: corrupted safetensors header entry for tensor {name!r}: {info!r}") from None
        if dtype not in ST_DTYPES:
            raise InteropError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        want = math.prod(shape) * ST_DTYPES[dtype][1]
        if end - begin != want or begin < 0:
            raise InteropError(f"{path}: corrupted safetensors header: tensor {name!r} ({dtype} {_fmt(shape)}) "
                               f"needs {want} bytes but its offsets span {end - begin}")
        if end > data_len:
            cut.append((begin, end, name))
    if cut:
        begin, end, name = min(cut)  # the first one in file order
        raise InteropError(f"{path}: truncated file: tensor {name!r} needs bytes {begin}..{end} of the data "
                           f"section but the file holds only {data_len} ({len(cut)} tensor(s) cut; incomplete "
                           f"download?)")
    return header, metadata, 8 + n


class WeightSource:
    """Tensors by name, read lazily from one or more files. Subclasses implement `_read`."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}  # tensor name -> file
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}  # safetensors dtype tag

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def where(self, name: str) -> str:
        return str(self.files.get(name, "?"))

    def check_dtype(self, name: str) -> None:
        tag = self.dtypes[name]
        if ST_DTYPES.get(tag, (None,))[0] is None:
            raise InteropError(f"{self.where(name)}: tensor {name!r} has dtype {tag}, which zerollm does not load "
                               f"(supported: F32, F16, BF16, F64; quantized checkpoints are not supported)")

    @contextlib.contextmanager
    def read(self, names: Iterable[str]) -> Iterator[dict[str, torch.Tensor]]:
        """Yield {name: tensor} for `names`. The tensors may be views of a memory map that is closed when
        the block ends: copy what you keep."""
        names = list(names)
        for n in names:
            self.check_dtype(n)
        with self._read(names) as tensors:
            yield tensors

    def _read(self, names: list[str]):
        raise NotImplementedError


class SafetensorsSource(WeightSource):
    """One safetensors file, or the shards named by a `model.safetensors.index.json`."""

    def __init__(self, files: Iterable[str | Path], index: Path | None = None):
        super().__init__()
        self.index = index
        for file in files:
            file = Path(file)
            if not file.is_file():
                where = f"{index}: names shard {file.name}, but " if index else ""
                raise InteropError(f"{where}{file}: no such file")
            header, _, _ = read_safetensors_header(file)
            for name, info in header.items():
                if name in self.files:
                    raise InteropError(f"{file}: tensor {name!r} is also in {self.files[name]}")
                self.files[name] = file
                self.shapes[name] = tuple(int(s) for s in info["shape"])
                self.dtypes[name] = info["dtype"]

    @classmethod
    def from_index(cls, index: str | Path) -> "SafetensorsSource":
        index = Path(index)
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InteropError(f"{index}: not a valid safetensors index ({e})") from None
        if not isinstance(weight_map, dict):
            raise InteropError(f"{index}: weight_map must be an object of tensor name -> shard file")
        shards = sorted(set(weight_map.values()), key=str)
        src = cls([shard_path(index, s) for s in shards], index=index)
        for name, shard in weight_map.items():
            if name not in src.files:
                raise InteropError(f"{index}: tensor {name!r} is listed in {shard} but missing from that file")
        return src

    @contextlib.contextmanager
    def _read(self, names: list[str]):
        from safetensors import safe_open

        with contextlib.ExitStack() as stack:
            handles, out = {}, {}
            for n in names:
                file = self.files[n]
                if file not in handles:
                    try:
                        handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
                    except Exception as e:  # safetensors raises its own error types
                        raise InteropError(f"{file}: cannot read safetensors file ({e})") from None
                try:
                    out[n] = handles[file].get_tensor(n)
                except Exception as e:
                    raise InteropError(f"{file}: cannot read tensor {n!r} ({e})") from None
            yield out


class BinSource(WeightSource):
    """PyTorch `pytorch_model*.bin` files, loaded with `torch.load(weights_only=True, mmap=True)` only."""

    def __init__(self, files: Iterable[str | Path]):
        super().__init__()
        self._tensors: dict[str, torch.Tensor] = {}
        for file in files:
            file = Path(file)
            try:
                try:
                    sd = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as e:  # pre-zipfile (legacy) files cannot be memory-mapped
                    if "mmap" not in str(e):
                        raise
                    sd = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as e:
                raise InteropError(f"{file}: cannot read PyTorch weights with torch.load(weights_only=True) "
                                   f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
            if not isinstance(sd, dict):
                raise InteropError(f"{file}: expected a state dict, got {type(sd).__name__}")
            for name, t in sd.items():
                if not isinstance(t, torch.Tensor):
                    raise InteropError(f"{file}: entry {name!r} is not a tensor")
                self.files[name], self.shapes[name] = file, tuple(t.shape)
                self.dtypes[name] = TORCH_TO_ST.get(t.dtype, str(t.dtype).removeprefix("torch."))
                self._tensors[name] = t

    @contextlib.contextmanager
    def _read(self, names: list[str]):
        yield {n: self._tensors[n] for n in names}


# ----------------------------------------------------------------------------------------------------------
# writing


class SafetensorsWriter:
    """Stream tensors into a safetensors file whose header is written first.

        w = SafetensorsWriter(path, [(name, shape, dtype), ...], metadata={"format": "pt"})
        for name, t in ...: w.write(name, t)     # in the declared order
        w.close()                                 # checks that every declared tensor was written
    """

    def __init__(self, path: str | Path, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        header: dict = {"__metadata__": dict(metadata)} if metadata else {}
        self.order: list[tuple[str, tuple[int, ...], torch.dtype]] = []
        offset = 0
        for name, shape, dtype in specs:
            if name in header:
                raise ValueError(f"{path}: tensor {name!r} declared twice")
            if dtype not in TORCH_TO_ST:
                raise ValueError(f"{path}: tensor {name!r}: dtype {dtype} cannot be written")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": TORCH_TO_ST[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self.order.append((name, tuple(shape), dtype))
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<Q", len(raw)) + raw)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self.order):
            raise ValueError(f"{self.path}: unexpected tensor {name!r} (all declared tensors written)")
        want, shape, dtype = self.order[self._next]
        if name != want or tuple(tensor.shape) != shape:
            raise ValueError(f"{self.path}: expected tensor {want!r} {_fmt(shape)} next, got {name!r} "
                             f"{_fmt(tensor.shape)}")
        t = tensor.detach().to(device="cpu", dtype=dtype).contiguous()
        self._f.write(t.reshape(-1).view(torch.uint8).numpy().data)
        self._next += 1

    def close(self) -> None:
        missing = [n for n, _, _ in self.order[self._next:]]
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if missing:
            raise ValueError(f"{self.path}: {len(missing)} declared tensor(s) never written, e.g. {missing[0]!r}")

    def abort(self) -> None:
        self._f.close()


def write_safetensors(path: str | Path, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                      produce: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str] | None = None) -> None:
    """Write `produce` ((name, tensor) pairs in `specs` order) to `path` (atomically)."""
    with atomic_path(path) as tmp:
        w = SafetensorsWriter(tmp, specs, metadata)
        try:
            for name, t in produce:
                w.write(name, t)
        except BaseException:
            w.abort()
            raise
        w.close()


# ----------------------------------------------------------------------------------------------------------
# models


class _SkipInit(torch.overrides.TorchFunctionMode):
    """Turn the random/constant initializers into no-ops while a model is constructed: parameters are
    allocated (torch.empty) but never filled, which costs nothing, unlike initializing 100M+ weights that
    are about to be overwritten. Everything else (e.g. the RoPE tables) is computed normally."""

    SKIP = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
            torch.nn.init.normal_, torch.nn.init.uniform_, torch.nn.init.kaiming_uniform_, torch.nn.init.zeros_,
            torch.nn.init.ones_, torch.nn.init.constant_, torch.nn.init.trunc_normal_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIP:
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **(kwargs or {}))


def empty_model(cfg, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A `Transformer(cfg)` whose parameters are allocated but not initialized (fill them all!)."""
    with _SkipInit():
        model = Transformer(cfg)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device)


def load_into(model: torch.nn.Module, produce: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """Copy (name, tensor) pairs into `model`'s parameters in place (casting dtype), checking names and shapes;
    every parameter must be filled exactly once."""
    params = dict(model.named_parameters())
    filled: set[str] = set()
    with torch.no_grad():
        for name, t in produce:
            p = params.get(name)
            if p is None:
                raise InteropError(f"{where}: unexpected tensor {name!r} (the model has no such parameter)")
            if tuple(t.shape) != tuple(p.shape):
                raise InteropError(f"{where}: tensor {name!r} has shape {_fmt(t.shape)}, the model expects "
                                   f"{_fmt(p.shape)}")
            p.copy_(t)
            filled.add(name)
    missing = [n for n in params if n not in filled]
    if missing:
        raise InteropError(f"{where}: missing tensor(s) for {missing[:5]}")


def load_safetensors_into(model: torch.nn.Module, path: str | Path, aliases: Callable[[str], bool] | None = None,
                          batch_bytes: int = 64 * 2**20, fills: dict | None = None) -> None:
    """Fill `model` from a zerollm `model.safetensors` (our names), mapping at most ~`batch_bytes` at a
    time. `fills`: {tensor name: (shape, fn)} for tensors the model keeps in another form, e.g. QLoRA's NF4
    layers: fn(tensor) stores it (quantizes it) instead of a copy into the state dict. Raises InteropError
    naming the file and tensor for missing, extra or mis-shaped tensors."""
    path = Path(path)
    src = SafetensorsSource([path])
    fills = fills or {}
    expected = {**model.state_dict(), **{n: torch.zeros(()).expand(shape) for n, (shape, _) in fills.items()}}
    params = [n for n, _ in model.named_parameters()] + list(fills)
    extra = [n for n in src.names if n not in expected]
    if extra:
        raise InteropError(f"{path}: unexpected tensor {extra[0]!r} (weights do not match the model config; "
                           f"{len(extra)} unexpected)")
    missing = [n for n in params if n not in src.files]
    if missing:
        raise InteropError(f"{path}: missing tensor {missing[0]!r} (weights do not match the model config; "
                           f"{len(missing)} missing)")
    for n in src.names:
        if src.shapes[n] != tuple(expected[n].shape):
            raise InteropError(f"{path}: tensor {n!r} has shape {_fmt(src.shapes[n])}, the model expects "
                               f"{_fmt(expected[n].shape)}")

    def batches() -> Iterator[list[str]]:
        batch, size = [], 0
        for n in src.names:
            batch.append(n)
            size += math.prod(src.shapes[n]) * ST_DTYPES[src.dtypes[n]][1]
            if size >= batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    with torch.no_grad():
        for batch in batches():
            with src.read(batch) as tensors:
                for n, t in tensors.items():
                    if n in fills:
                        fills[n][1](t)
                    else:
                        expected[n].copy_(t)
