"""Find a Hugging Face model by its hub name in the local cache, offline (zerollm never downloads).

transformers' `from_pretrained("openai-community/gpt2")` stores the files as

    $HF_HUB_CACHE  (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
      models--openai-community--gpt2/
        refs/main                 ← the commit hash the name points at
        snapshots/<commit>/       ← config.json, model.safetensors, tokenizer.json, ...

`resolve_model_dir(name)` returns a directory that exists as given, else that snapshot directory.
"""
from __future__ import annotations

import os
from pathlib import Path


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _snapshot(repo_dir: Path, revision: str) -> Path | None:
    ref = repo_dir / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snap = repo_dir / "snapshots" / commit
    if snap.is_dir():
        return snap
    snaps = sorted(p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()) if revision == "main" else []
    return snaps[0] if len(snaps) == 1 else None  # no refs/main (a copied cache): its only snapshot


def resolve_model_dir(name_or_dir: str | os.PathLike, revision: str = "main") -> Path:
    """A local model directory, or the cached snapshot of hub model `name_or_dir` (e.g. "gpt2",
    "openai-community/gpt2", "rinna/japanese-gpt2-small"). A bare name also matches one cached `ORG/name`."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_dir)
    root = hub_cache_dir()
    candidates = [root / ("models--" + name.replace("/", "--"))]
    if "/" not in name and root.is_dir():
        candidates += sorted(root.glob(f"models--*--{name}"))
    for repo_dir in candidates:
        if repo_dir.is_dir():
            snap = _snapshot(repo_dir, revision)
            if snap is not None:
                return snap
    raise FileNotFoundError(
        f"{name}: no such directory, and not in the local Hugging Face cache at {root} "
        f"(looked for {candidates[0].name}/snapshots/ at revision {revision!r}). zerollm works offline: "
        f"download it where there is network (huggingface-cli download {name}) and copy the cache, set "
        f"HF_HOME, or pass the model directory")


__all__ = ["hub_cache_dir", "resolve_model_dir"]
