"""Artifact directories: manifests, hashing and atomic writes.

Every stage writes a directory whose `manifest.json` says what it is:
    {"kind": "tokenizer" | "shards" | "checkpoint" | "run" | ..., "format_version": 1,
     "created": ISO time, "zerollm_version": ..., ...stage-specific fields}
Files are written to a temporary name in the same directory and renamed into place, so a crash never
leaves a half-written file under the final name; whole directories are built in a temporary sibling and
renamed (`atomic_dir`), so a reader sees either the old directory or the complete new one.

Nothing zerollm did not write is ever deleted or overwritten: `atomic_dir` replaces an existing path only
when it is a zerollm artifact of the same kind (its manifest says so). Stages check their `--out` up front
(`prepare_out`): an input inside `--out` is an error, and anything else already there is an error unless
`--overwrite`, which moves it aside (`<out>.old-<time>`, one rename) rather than deleting it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from zerollm import __version__

FORMAT_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public(path: str | Path, is_dir: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give artifacts the modes a plain open() would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _public(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; rename it onto `path` only if the block succeeds.
    For libraries that want a filename (safetensors.save_file, torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _public(tmp)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed): every plot zerollm draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG atomically (temp file + rename) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
    return path


def artifact_kind(path: str | Path) -> str | None:
    """The manifest kind of a zerollm artifact directory, or None (not a directory, no or bad manifest)."""
    try:
        kind = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _refuse(path: Path, kind: str, hint: str = "choose another path") -> FileExistsError:
    found = artifact_kind(path)
    what = "a file" if path.is_file() else f"a zerollm {found}" if found else "not a zerollm artifact"
    return FileExistsError(f"{path} already exists and is {what}, not a zerollm {kind}: {hint}")


def remove_stale_tmp(parent: str | Path, name_glob: str) -> list[Path]:
    """Remove what a crash (kill -9) mid-write left beside its target in `parent`: the temporary siblings
    `.NAME.XXXXXXXX.tmp` of atomic_dir/atomic_path for names matching `name_glob` (a glob; escape literal
    names with glob.escape), and `.NAME.old-PID` copies whose NAME is back in place. Called when the same
    stage starts again (atomic_dir, the training loop), so such leftovers never pile up. Returns what went."""
    parent, gone = Path(parent), []
    if not parent.is_dir():
        return gone
    for p in [*parent.glob(f".{name_glob}.*.tmp"), *parent.glob(f".{name_glob}.old-*")]:
        if ".old-" in p.name and not (parent / p.name[1:p.name.rindex(".old-")]).exists():
            continue  # the swap was cut between its two renames: this is the only copy, keep it
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str) -> Iterator[Path]:
    """Build a directory at a temporary sibling, then swap it into place in one rename. An existing `path`
    is replaced only if it is a zerollm artifact of the same `kind` (its manifest says so), checked before
    any work and again at the swap. If the block raises, the temporary directory is removed and `path` is
    untouched."""
    path = Path(path)
    if path.exists() and artifact_kind(path) != kind:
        raise _refuse(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path.parent, glob.escape(path.name))  # an earlier write of this path that was killed
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _public(tmp, is_dir=True)
        yield tmp
        if path.exists():
            if artifact_kind(path) != kind:  # something else appeared there meanwhile
                raise _refuse(path, kind)
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_aside(path: str | Path) -> Path:
    """Rename `path` to a free sibling `<name>.old-<YYYYmmdd-HHMMSS>[-n]` in one rename; returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        aside = path.with_name(f"{path.name}.old-{stamp}" + (f"-{n}" if n else ""))
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise FileExistsError(f"{path}: no free name to move it aside")


def prepare_out(out: str | Path, kind: str, *, overwrite: bool = False, inputs=()) -> Path:
    """Check a stage's `--out` before any work: no input may lie inside it; an existing path that is not a
    zerollm `kind` is an error, or with `overwrite` is moved aside (nothing is deleted). Single-file outputs
    (GGUF, llama2.c .bin) pass kind "file": no existing file is ever of that kind, so none is replaced."""
    out = Path(out)
    target = out.resolve()
    for item in inputs:
        src = Path(item).resolve()
        if src == target or target in src.parents:
            raise ValueError(f"input {item} lies inside --out {out}: writing {out} would replace it; choose "
                             f"another --out")
    if out.exists() and artifact_kind(out) != kind:
        if not overwrite:
            raise _refuse(out, kind, "choose another --out, or pass --overwrite to move it aside")
        print(f"moved {out} aside to {move_aside(out)}")
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_manifest(directory: str | Path, kind: str, **fields: Any) -> dict:
    manifest = {"kind": kind, "format_version": FORMAT_VERSION, "created": now_iso(),
                "zerollm_version": __version__, **fields}
    atomic_write_json(Path(directory) / "manifest.json", manifest)
    return manifest


def read_manifest(directory: str | Path, kind: str | None = None) -> dict:
    """Read `manifest.json`; if `kind` is given, check it, with an error naming the directory."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no manifest.json (not a zerollm artifact directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{directory}: manifest kind is {manifest.get('kind')!r}, expected {kind!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{directory}: format_version {manifest['format_version']} is newer than this "
                         f"zerollm understands ({FORMAT_VERSION}); upgrade zerollm")
    return manifest
