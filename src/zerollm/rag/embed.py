"""Text embeddings for dense retrieval.

An embedder has `encode(texts, is_query=False) -> (n, dim) float32` with L2-normalized rows (so inner
product = cosine similarity, what the FAISS IndexFlatIP in index.py computes) and `spec() -> dict`, which
the index manifest records so `RAGIndex.open` can load the same embedder again.

* `ZerollmEmbedder`: mean-pooled final hidden states (`Transformer.forward(..., return_hidden=True)`) of a
  zerollm checkpoint, padding excluded from the mean. Works with any zerollm or converted model; quality
  depends on the model (a causal LM is not trained for similarity).
* `BertEncoder` (model/bert.py): a BERT-family sentence-transformers directory, loaded from disk by our own
  encoder and WordPiece tokenizer. As an index embedder its rows are always L2-normalized (cosine), even
  when the directory has no Normalize module.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zerollm.loading import load

from . import RAGError


class ZerollmEmbedder:
    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 16, max_tokens: int | None = None):
        self.model_dir = str(model_dir)
        loaded = load(model_dir, device)
        self.model, self.tok = loaded.model, loaded.tokenizer
        if self.tok is None:
            raise RAGError(f"{model_dir}: checkpoint has no tokenizer/ directory")
        self.batch_size = batch_size
        self.max_tokens = min(max_tokens or self.model.cfg.max_seq_len, self.model.cfg.max_seq_len)

    def spec(self) -> dict:
        return {"type": "zerollm", "path": self.model_dir}

    @torch.inference_mode()
    def encode(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        out = []
        device = next(self.model.parameters()).device
        for i in range(0, len(texts), self.batch_size):
            ids = [self.tok.encode(t)[: self.max_tokens] or [self.tok.eos_id or 0] for t in texts[i:i + self.batch_size]]
            T = max(len(x) for x in ids)
            x = torch.zeros(len(ids), T, dtype=torch.long, device=device)
            mask = torch.zeros(len(ids), T, 1, device=device)
            for j, seq in enumerate(ids):  # right padding: causal attention never lets real tokens see it
                x[j, :len(seq)] = torch.tensor(seq)
                mask[j, :len(seq)] = 1
            h = self.model(x, return_hidden=True).float()  # (B, T, D)
            pooled = (h * mask).sum(1) / mask.sum(1)  # (B, D) mean over real tokens
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.model.cfg.d_model), np.float32)


def _is_hf_bert(path: Path) -> bool:
    """A plain Hugging Face BERT directory (config.json with model_type "bert"): model/bert.py loads it."""
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == "bert"
    except (OSError, ValueError, AttributeError):
        return False


def load_embedder(spec: dict | str | Path):
    """An embedder from a manifest spec, or from a directory (zerollm checkpoint/run dir)."""
    if isinstance(spec, dict):
        kind, path = spec.get("type"), spec.get("path")
    else:
        path = str(spec)
        kind = "bert" if (Path(path) / "modules.json").is_file() or (Path(path) / "sentence_bert_config.json").is_file() \
            or _is_hf_bert(Path(path)) else "zerollm"
    if not path or not Path(path).exists():
        raise RAGError(f"embedding model {path!r} not found")
    if kind == "zerollm":
        return ZerollmEmbedder(path)
    if kind == "bert":
        from zerollm.model.bert import BertEncoder
        return BertEncoder(path, normalize=True)  # inner product in the index = cosine similarity
    raise RAGError(f"unknown embedder type {kind!r}")
