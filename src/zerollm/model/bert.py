"""A BERT-family sentence encoder written here (Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding"), loading sentence-transformers directories
(Reimers & Gurevych 2019, "Sentence-BERT") from disk, for dense retrieval.

    texts ──WordPiece (our tokenizer, the dir's vocab.txt)──▶ [CLS] ids… [SEP], padded + attention mask
        ──BertModel──▶ hidden states (B, T, D)
        ──pooling (1_Pooling/config.json: mean | cls | max | mean_sqrt_len)──▶ (B, D)
        ──2_Normalize (if listed in modules.json)──▶ L2-normalized float32 rows

The model (`BertModel`), post-LN as in the paper; every name below is the Hugging Face key prefix of
its weights, so loading is a rename-free copy:

    embeddings:  x = LayerNorm(word_embeddings[ids] + position_embeddings[0..T) + token_type_embeddings[tt])
    encoder.layer.{i}:
        a = attention.self: softmax(Q Kᵀ / √d_head + padding mask) V   (query/key/value Linear, SDPA)
        x = attention.output.LayerNorm(x + attention.output.dense(a))
        x = output.LayerNorm(x + output.dense(act(intermediate.dense(x))))   act = GELU with erf (exact)

Config: a Hugging Face `config.json` with model_type "bert" (hidden_size, num_hidden_layers,
num_attention_heads, intermediate_size, max_position_embeddings, type_vocab_size, layer_norm_eps,
hidden_act). Weights: `model.safetensors`, else `pytorch_model.bin` (torch.load with weights_only=True);
keys may carry a `bert.` prefix (BertForMaskedLM & co.); old `LayerNorm.gamma/beta` names are accepted;
other keys (pooler, MLM head) are ignored. A missing or mis-shaped tensor is an error naming it.

A sentence-transformers directory: `modules.json` lists the modules in order (Transformer at path "" or
"0_Transformer", then Pooling, then optionally Normalize); `sentence_bert_config.json` gives
max_seq_length; the tokenizer is rebuilt from `vocab.txt` + `tokenizer_config.json` (do_lower_case,
strip_accents, tokenize_chinese_chars) with our WordPiece (tokenizer/wordpiece.py), which matches
`BertTokenizerFast` id for id. A plain Hugging Face BERT directory (no modules.json) loads too, with
mean pooling and no normalization.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zerollm.rag import RAGError
from zerollm.tokenizer.wordpiece import WordPieceTokenizer, read_vocab

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact: x·Φ(x) with erf
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")  # sentence-transformers' concatenation order


# ---------------------------------------------------------------------------------------------------------
# config and model

@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json") -> "BertConfig":
        kind = d.get("model_type")
        if kind != "bert":
            raise RAGError(f"{where}: model_type {kind!r} is not supported; the encoder in zerollm.model.bert "
                           "loads model_type 'bert' (BERT, MiniLM, BGE/E5-style BERT checkpoints)")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise RAGError(f"{where}: position_embedding_type {d['position_embedding_type']!r} is not supported "
                           "(only 'absolute')")
        if d.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise RAGError(f"{where}: hidden_act {d['hidden_act']!r} is not supported; "
                           f"use one of {', '.join(ACTIVATIONS)}")
        if "vocab_size" not in d:
            raise RAGError(f"{where}: no vocab_size")
        names = cls.__dataclass_fields__
        cfg = cls(**{k: d[k] for k in names if k in d and d[k] is not None})
        if cfg.hidden_size % cfg.num_attention_heads:
            raise RAGError(f"{where}: hidden_size {cfg.hidden_size} is not divisible by "
                           f"num_attention_heads {cfg.num_attention_heads}")
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        if not path.is_file():
            raise RAGError(f"{path}: not found (a BERT model directory needs config.json)")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        split = lambda t: t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731 (B, H, T, dh)
        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                             attn_mask=mask)
        return out.transpose(1, 2).reshape(B, T, D)


class _DenseLN(nn.Module):
    """`dense` then residual + LayerNorm (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, d_in: int, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(h))


class _Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseLN(c.hidden_size, c)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseLN(c.intermediate_size, c)
        self.act = ACTIVATIONS[c.hidden_act]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention.output(self.attention.self(x, mask), x)  # post-LN: norm after the residual add
        return self.output(self.act(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class BertModel(nn.Module):
    """The BERT encoder: `forward(input_ids, attention_mask) -> last hidden states (B, T, hidden_size)`."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.shape[1] > self.cfg.max_position_embeddings:
            raise RAGError(f"sequence of {input_ids.shape[1]} tokens is longer than max_position_embeddings "
                           f"{self.cfg.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        mask = None
        if attention_mask is not None:  # (B, T) 1 = real token -> (B, 1, 1, T) bool "may attend to"
            mask = attention_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


# ---------------------------------------------------------------------------------------------------------
# weights

def _read_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    st, pt = model_dir / "model.safetensors", model_dir / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file
        return load_file(str(st))
    if pt.is_file():
        return torch.load(str(pt), map_location="cpu", weights_only=True)
    raise RAGError(f"{model_dir}: no model.safetensors or pytorch_model.bin")


def _hf_name(key: str) -> str:
    """Our parameter name for a Hugging Face key (strip `bert.`, map old gamma/beta LayerNorm names)."""
    if key.startswith("bert."):
        key = key[len("bert."):]
    if ".LayerNorm.gamma" in key or ".LayerNorm.beta" in key:
        key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
    return key


def load_bert(model_dir: str | Path, device: str = "cpu") -> BertModel:
    """A BertModel from a Hugging Face directory (config.json + model.safetensors / pytorch_model.bin)."""
    model_dir = Path(model_dir)
    cfg = BertConfig.from_json(model_dir / "config.json")
    state = {_hf_name(k): v for k, v in _read_state_dict(model_dir).items()}
    with torch.device("meta"):
        model = BertModel(cfg)
    wanted = dict(model.named_parameters())
    loaded = {}
    for name, p in wanted.items():
        t = state.get(name)
        if t is None:
            raise RAGError(f"{model_dir}: tensor {name!r} is missing from the weights file")
        if tuple(t.shape) != tuple(p.shape):
            raise RAGError(f"{model_dir}: tensor {name!r} has shape {tuple(t.shape)}, the config says "
                           f"{tuple(p.shape)}")
        loaded[name] = t.to(torch.float32)
    model.load_state_dict(loaded, assign=True)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------
# sentence-transformers directories

def _read_json(path: Path, default=None):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RAGError(f"{path}: not valid JSON ({e})") from None


def _pooling_modes(cfg: dict, where: Path) -> list[str]:
    """The enabled pooling modes, in sentence-transformers' concatenation order."""
    short = cfg.get("pooling_mode")  # the constructor's shorthand ("mean", "cls", ...), seen in some configs
    if isinstance(short, str):
        modes = {"cls": "cls", "mean": "mean", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}
        if short not in modes:
            raise RAGError(f"{where}: pooling_mode {short!r} is not supported (use mean, cls or max pooling)")
        return [modes[short]]
    flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
             "mean": "pooling_mode_mean_tokens", "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
    unsupported = [k for k in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken") if cfg.get(k)]
    if unsupported:
        raise RAGError(f"{where}: {', '.join(unsupported)} is not supported (use mean, cls or max pooling)")
    modes = [m for m in POOLING_MODES if cfg.get(flags[m])]
    if not modes:
        raise RAGError(f"{where}: no pooling mode enabled")
    return modes


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: list[str]) -> torch.Tensor:
    """sentence-transformers' Pooling: (B, T, D) hidden + (B, T) mask -> (B, D * len(modes))."""
    m = mask[..., None].to(hidden.dtype)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, -1e9).max(dim=1).values)
        else:
            s, n = (hidden * m).sum(1), m.sum(1).clamp(min=1e-9)
            out.append(s / n if mode == "mean" else s / n.sqrt())
    return torch.cat(out, dim=-1)


class BertEncoder:
    """Sentence embeddings from a sentence-transformers (or plain Hugging Face BERT) directory.

    `encode(texts, batch_size)` -> (n, d) float32, L2-normalized when the directory lists a Normalize
    module (or `normalize=True` is given). Also a zerollm.rag embedder (`encode(..., is_query=)`, `spec()`).
    """

    def __init__(self, path: str | Path, device: str = "cpu", normalize: bool | None = None,
                 batch_size: int = 32, max_seq_length: int | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RAGError(f"{self.path}: not a directory")
        modules = _read_json(self.path / "modules.json", default=None)
        model_sub, pooling_sub, st_normalize = "", None, False
        if modules is not None:
            if not isinstance(modules, list):
                raise RAGError(f"{self.path / 'modules.json'}: expected a list of modules")
            for m in modules:
                kind = str(m.get("type", "")).rsplit(".", 1)[-1]
                if kind == "Transformer":
                    model_sub = m.get("path", "")
                elif kind == "Pooling":
                    pooling_sub = m.get("path", "1_Pooling")
                elif kind == "Normalize":
                    st_normalize = True
                else:
                    raise RAGError(f"{self.path / 'modules.json'}: module {m.get('type')!r} is not supported "
                                   "(Transformer, Pooling and Normalize are)")
        model_dir = self.path / model_sub
        self.model = load_bert(model_dir, device)
        self.device = device
        if pooling_sub is not None:
            pcfg_path = self.path / pooling_sub / "config.json"
            pcfg = _read_json(pcfg_path)
            if pcfg is None:
                raise RAGError(f"{pcfg_path}: not found (listed in modules.json)")
            self.pooling = _pooling_modes(pcfg, pcfg_path)
        else:
            self.pooling = ["mean"]
        self.normalize = st_normalize if normalize is None else bool(normalize)
        self.batch_size = batch_size

        st_cfg = _read_json(self.path / "sentence_bert_config.json", default={}) or \
            _read_json(model_dir / "sentence_bert_config.json", default={})
        tok_cfg = _read_json(model_dir / "tokenizer_config.json", default={})
        limit = self.model.cfg.max_position_embeddings
        self.max_seq_length = min(max_seq_length or st_cfg.get("max_seq_length") or limit, limit)
        self.lowercase_input = bool(st_cfg.get("do_lower_case", False))  # ST's own lowercasing of the text

        vocab_path = model_dir / "vocab.txt"
        if not vocab_path.is_file():
            raise RAGError(f"{vocab_path}: not found (the WordPiece vocabulary of the encoder)")
        vocab = read_vocab(vocab_path)
        self.tokenizer = WordPieceTokenizer(
            vocab, {}, lowercase=bool(tok_cfg.get("do_lower_case", True)),
            strip_accents=tok_cfg.get("strip_accents"),
            handle_chinese_chars=bool(tok_cfg.get("tokenize_chinese_chars", True)),
            unk_token=tok_cfg.get("unk_token", "[UNK]"))
        ids = self.tokenizer.token_to_id
        for name in ("cls_token", "sep_token", "pad_token"):
            tok = tok_cfg.get(name, {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}[name])
            if isinstance(tok, dict):  # old AddedToken serialization
                tok = tok.get("content")
            if tok not in ids:
                raise RAGError(f"{vocab_path}: the {name} {tok!r} is not in the vocabulary")
            setattr(self, name[:-6] + "_id", ids[tok])
        if len(vocab) > self.model.cfg.vocab_size:
            raise RAGError(f"{vocab_path}: {len(vocab)} tokens but the model's vocab_size is "
                           f"{self.model.cfg.vocab_size}")

    @property
    def dim(self) -> int:
        return self.model.cfg.hidden_size * len(self.pooling)

    def spec(self) -> dict:
        return {"type": "bert", "path": str(self.path.resolve()), "normalize": self.normalize}

    def token_ids(self, text: str) -> list[int]:
        """`[CLS] pieces… [SEP]`, truncated to max_seq_length (as BertTokenizerFast with truncation)."""
        if self.lowercase_input:
            text = text.lower()
        return [self.cls_id, *self.tokenizer.encode(text)[: self.max_seq_length - 2], self.sep_id]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (input_ids, attention_mask), both (B, T) long."""
        seqs = [self.token_ids(t) for t in texts]
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask

    @torch.inference_mode()
    def encode(self, texts: list[str] | str, batch_size: int | None = None, is_query: bool = False) -> np.ndarray:
        """(n, dim) float32 sentence embeddings. Texts are sorted by length so batches pad little.
        `is_query` is accepted for the RAG embedder interface and changes nothing (no query prefix)."""
        if isinstance(texts, str):
            texts = [texts]
        bs = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            ids, mask = self.batch([texts[i] for i in idx])
            ids, mask = ids.to(self.device), mask.to(self.device)
            emb = pool(self.model(ids, mask), mask, self.pooling)
            if self.normalize:
                emb = F.normalize(emb, dim=-1)
            out[idx] = emb.float().cpu().numpy()
        return out


def load_sentence_transformer(path: str | Path, device: str = "cpu", normalize: bool | None = None) -> BertEncoder:
    """A BertEncoder for a sentence-transformers directory (see the module docstring)."""
    return BertEncoder(path, device=device, normalize=normalize)

