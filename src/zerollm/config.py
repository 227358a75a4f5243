"""Configuration as data.

`ModelConfig` describes every decoder-only variant zerollm knows (GPT-2, Llama, Qwen, GPT-NeoX) as plain
fields: the transformer module reads these and nothing else, so a checkpoint carries its whole architecture
in `config.json`. `PRESETS` names the sizes a user can ask for.

Stage configs (training, data, quickstart) are dataclasses too. `load_config(cls, yaml_path, overrides)`
builds one from defaults < YAML file < dotted command-line overrides (`--optim.lr=3e-4`), checking every
key against the dataclass fields so a typo is an error that names the key, not a silent no-op.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zerollm.errors import ConfigError, check_range


@dataclass
class ModelConfig:
    """Architecture of one decoder-only transformer. Defaults are a ~1M-parameter GPT-2-style model."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # grouped-query attention; None = n_head (plain multi-head)
    d_model: int = 128
    d_ff: int | None = None  # MLP hidden width; None = 4*d_model (gelu) or 8/3*d_model rounded (swiglu)
    head_dim: int | None = None  # None = d_model // n_head (Qwen3 may differ)
    max_seq_len: int = 256
    # variant switches (design.md rule 1)
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # gelu (tanh approx, GPT-2) | gelu_exact (GPT-NeoX) | relu (Vaswani 2017) | swiglu (Llama)
    position: str = "learned"  # learned | rope
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # e.g. {"rope_type": "llama3", "factor": 8.0, ...}
    rotary_pct: float = 1.0  # fraction of head_dim that is rotated (GPT-NeoX partial rotary)
    qk_norm: bool = False  # per-head RMSNorm on q and k before RoPE (Qwen3)
    parallel_residual: bool = False  # x + attn(ln1(x)) + mlp(ln2(x)) (GPT-NeoX)
    bias: bool = True  # biases on linear layers and LayerNorm
    qkv_bias: bool | None = None  # None = follow `bias` (Qwen2: True while bias=False)
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self._check_shapes()
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None:
            if self.d_model % self.n_head:
                raise ConfigError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
            self.head_dim = self.d_model // self.n_head
        if self.d_ff is None:
            if self.mlp == "swiglu":  # keep params ~ equal to a 4x GELU MLP, rounded up to a multiple of 64
                self.d_ff = 64 * ((int(8 * self.d_model / 3) + 63) // 64)
            else:
                self.d_ff = 4 * self.d_model
        if self.qkv_bias is None:
            self.qkv_bias = self.bias
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        for name, allowed in (("norm", ("layernorm", "rmsnorm")), ("mlp", ("gelu", "gelu_exact", "relu", "swiglu")),
                              ("position", ("learned", "rope"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModelConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")

    # upper bounds far above any real model, so a typo (d_model 1e7, n_layer 200000) fails before allocation
    _MAX = {"vocab_size": 1 << 24, "n_layer": 1024, "n_head": 1024, "n_kv_head": 1024, "d_model": 1 << 16,
            "d_ff": 1 << 20, "head_dim": 1 << 12, "max_seq_len": 1 << 24}

    def _check_shapes(self) -> None:
        """Every shape a positive integer within _MAX (None where a default is derived), floats in range."""
        for name, hi in self._MAX.items():
            value = getattr(self, name)
            if value is not None or name in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len"):
                check_range(f"model config {name}", value, 1, hi, integer=True)
        check_range("model config norm_eps", self.norm_eps, 0, 1)
        check_range("model config dropout", self.dropout, 0, 1)
        check_range("model config rotary_pct", self.rotary_pct, 0, 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s): {sorted(unknown)}")
        return cls(**d)


def _gpt2(**kw: Any) -> dict:
    return dict(norm="layernorm", mlp="gelu", position="learned", bias=True, tie_embeddings=True, **kw)


def _llama(**kw: Any) -> dict:
    return dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, tie_embeddings=True, **kw)


# Named sizes. Vocab size is filled from the tokenizer when a preset is used for training.
PRESETS: dict[str, dict] = {
    # nanoGPT's CPU recipe shape (4 x 128 x 4, context 64): the in-run stand-in for nanoGPT
    "nano-char": _gpt2(n_layer=4, n_head=4, d_model=128, max_seq_len=64, vocab_size=256),
    # `zerollm quickstart`'s model, chosen with bench/bench_quickstart.py for the best bits per byte in 5 CPU minutes
    "quickstart": _llama(n_layer=4, n_head=4, n_kv_head=4, d_model=128, max_seq_len=128),
    "gpt-1m": _gpt2(n_layer=4, n_head=4, d_model=128, max_seq_len=256),
    "llama-1m": _llama(n_layer=4, n_head=4, n_kv_head=2, d_model=128, max_seq_len=256),
    "llama-5m": _llama(n_layer=6, n_head=6, n_kv_head=2, d_model=192, max_seq_len=256),
    "gpt-10m": _gpt2(n_layer=6, n_head=6, d_model=384, max_seq_len=512),
    "llama-20m": _llama(n_layer=8, n_head=8, n_kv_head=4, d_model=512, max_seq_len=512),
    # GPT-2 small (124M with vocab 50257) and a Llama-style model of the same width/depth
    "gpt2-124m": _gpt2(n_layer=12, n_head=12, d_model=768, max_seq_len=1024, vocab_size=50257),
    "llama-124m": _llama(n_layer=12, n_head=12, n_kv_head=4, d_model=768, max_seq_len=1024, vocab_size=50257),
}


def model_config_from_preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise ConfigError(f"unknown model config key(s): {', '.join('model.' + k for k in sorted(unknown))}")
    return ModelConfig(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------------------------
# YAML + dotted overrides for any (nested) dataclass


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a YAML/CLI value into the declared field type, with an error that names the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(value, non_none[0], key)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return build_dataclass(tp, value, prefix=key + ".")
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            return list(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: cannot read {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


def build_dataclass(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in sorted(unknown))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def parse_overrides(items: list[str]) -> dict:
    """['optim.lr=3e-4', '--steps=10'] -> {'optim': {'lr': 3e-4}, 'steps': 10} (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        item = item[2:] if item.startswith("--") else item
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type, yaml_path: str | Path | None = None, overrides: list[str] | dict | None = None,
                base: Any = None) -> Any:
    """defaults (or `base`) < YAML file < overrides. Returns an instance of `cls`."""
    values: dict = dataclasses.asdict(base) if base is not None else {}
    if yaml_path:
        text = Path(yaml_path).read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{yaml_path}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{yaml_path}: top level must be a mapping")
        values = _deep_merge(values, data)
    if overrides:
        values = _deep_merge(values, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return build_dataclass(cls, values)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(cfg))), sort_keys=False)


__all__ = ["ModelConfig", "PRESETS", "model_config_from_preset", "load_config", "parse_overrides",
           "build_dataclass", "to_yaml", "field"]
