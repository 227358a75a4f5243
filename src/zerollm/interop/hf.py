"""Hugging Face model directories in and out: load or convert one into zerollm, export ours as one.

    HF dir (config.json with "model_type", model.safetensors | model-0000k-of-0000n.safetensors + index |
            pytorch_model*.bin, tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json)
        ── load_hf ──▶ Transformer (+ tokenizer)          every `--model` accepts an HF dir directly
        ── convert_hf ──▶ zerollm checkpoint dir           manifest.json, config.json (ModelConfig),
                                                          model.safetensors (our names), tokenizer/,
                                                          generation_config.json
    zerollm model ── export_hf ──▶ HF dir that AutoModelForCausalLM / AutoTokenizer load

Before a byte is copied, `plan_import` checks the whole checkpoint against the config: every expected tensor
present (a tied checkpoint may omit or carry `lm_head.weight`), nothing unexpected (causal-mask buffers
excepted), every shape right (the expected HF shapes are computed by running the export rules on
storage-less probe tensors), every dtype loadable. Errors are `InteropError`s naming the file and the tensor.

Memory: weights go straight from a (briefly) mapped file into the parameters of a model allocated without
initialization (`weights.empty_model`), and conversion streams tensor by tensor into the output file, so
neither holds a second copy of the weights (bench/bench_load_memory.py measures it).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import torch

from zerollm.artifacts import (
    artifact_kind,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    write_manifest,
)
from zerollm.chat.format import CHATML_TEMPLATE
from zerollm.config import ModelConfig
from zerollm.interop.hf_arch import (
    IGNORED,
    Rule,
    config_from_hf,
    config_to_hf,
    hf_model_type,
    rules_for,
    tied_head_name,
)
from zerollm.interop.hf_tokenizer import (
    CHAT_TEMPLATE_FILE,
    HF_CONFIG_FILE,
    load_chat_template,
    load_hf_tokenizer,
    read_json,
    write_hf_tokenizer,
)
from zerollm.interop.weights import (
    BinSource,
    InteropError,
    SafetensorsSource,
    WeightSource,
    _fmt,
    empty_model,
    load_into,
    shard_path,
    write_safetensors,
)
from zerollm.tokenizer.base import save_affixes

OPTIONAL_PREFIXES = ("transformer.", "model.", "gpt_neox.")  # some Hub files omit them (openai-community/gpt2)


def is_hf_dir(path: str | Path) -> bool:
    """An HF model directory: config.json with a `model_type`, and not a zerollm checkpoint (no manifest, or
    the one `export_hf` leaves)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file() or (path / "manifest.json").is_file() and artifact_kind(path) != "hf_export":
        return False
    try:
        return "model_type" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def read_hf_config(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InteropError(f"{path}: cannot read config ({e})") from None
    if not isinstance(d, dict):
        raise InteropError(f"{path}: not a JSON object")
    return d


def hf_weight_source(directory: str | Path) -> WeightSource:
    """The weights of an HF dir: safetensors (single or sharded) preferred, else `.bin` (weights_only)."""
    d = Path(directory)
    if (d / "model.safetensors.index.json").is_file():
        return SafetensorsSource.from_index(d / "model.safetensors.index.json")
    if (d / "model.safetensors").is_file():
        return SafetensorsSource([d / "model.safetensors"])
    if (d / "pytorch_model.bin.index.json").is_file():
        index = d / "pytorch_model.bin.index.json"
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()), key=str)
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise InteropError(f"{index}: not a valid index ({e})") from None
        return BinSource([shard_path(index, s) for s in shards])
    if (d / "pytorch_model.bin").is_file():
        return BinSource([d / "pytorch_model.bin"])
    raise InteropError(f"{d}: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)")


class ImportPlan:
    """What loading an HF dir will do, checked up front: config, rules, and HF name -> stored name."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.hf_config = read_hf_config(self.directory)
        where = str(self.directory / "config.json")
        self.cfg: ModelConfig = config_from_hf(self.hf_config, where)
        self.model_type: str = self.hf_config["model_type"]
        self.rules: list[Rule] = rules_for(self.model_type, self.cfg)
        self.source = hf_weight_source(self.directory)
        self.stored: dict[str, str] = {}  # HF name -> name in the file
        self._check()

    def _where(self) -> str:
        src = self.source
        if isinstance(src, SafetensorsSource) and src.index is not None:
            return str(src.index)
        files = sorted({str(f) for f in src.files.values()})
        return files[0] if len(files) == 1 else str(self.directory)

    def _check(self) -> None:
        src, names = self.source, set(self.source.names)
        ours = our_shapes(self.cfg)
        for rule in self.rules:
            expected = rule.to_theirs([shape_probe(ours[n]) for n in rule.ours])
            for hf_name, t in zip(rule.theirs, expected):
                stored = next((c for c in _candidates(hf_name) if c in names), None)
                if stored is None:
                    raise InteropError(f"{self._where()}: missing tensor {hf_name!r} (needed for {rule.ours[0]!r})")
                if src.shapes[stored] != tuple(t.shape):
                    raise InteropError(f"{src.where(stored)}: tensor {stored!r} has shape {_fmt(src.shapes[stored])}, "
                                       f"config.json implies {_fmt(t.shape)}")
                src.check_dtype(stored)
                self.stored[hf_name] = stored
        used = set(self.stored.values())
        head = tied_head_name(self.model_type)
        for name in src.names:
            if name in used or IGNORED.search(name):
                continue
            if self.cfg.tie_embeddings and name in _candidates(head):
                continue  # a tied checkpoint that also stores the (identical) output projection
            raise InteropError(f"{src.where(name)}: unexpected tensor {name!r} (not part of a "
                               f"{self.model_type} model with this config.json)")

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(our name, tensor) for every parameter; a tensor is only valid until the next one is requested."""
        for rule in self.rules:
            stored = [self.stored[n] for n in rule.theirs]
            with self.source.read(stored) as got:
                yield from zip(rule.ours, rule.to_ours([got[n] for n in stored]))

    @property
    def dtype(self) -> str:
        return str(self.hf_config.get("dtype") or self.hf_config.get("torch_dtype") or "float32")


def _candidates(name: str) -> list[str]:
    """Names a tensor may be stored under: as is, without an optional prefix, or an alias (transformers 5
    calls GPT-NeoX's `embed_out` `lm_head` in memory)."""
    out = [name] + (["lm_head.weight"] if name == "embed_out.weight" else [])
    for p in OPTIONAL_PREFIXES:
        if name.startswith(p):
            out.append(name[len(p):])
    return out


def our_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of `Transformer(cfg)` (allocated, never touched: costs no memory)."""
    return {n: tuple(p.shape) for n, p in empty_model(cfg).state_dict().items()}


def shape_probe(shape) -> torch.Tensor:
    """A zero-stride tensor of `shape` (no storage) to run the rules on when only shapes matter.
    (Meta tensors would do, but their first use imports seconds' worth of torch internals.)"""
    return torch.zeros((), dtype=torch.float32).expand(shape)


def load_hf(directory: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
            with_tokenizer: bool = True):
    """(model, tokenizer or None, directory) from an HF model directory, like `load_model` for checkpoints."""
    plan = ImportPlan(directory)
    model = empty_model(plan.cfg, dtype=dtype)
    load_into(model, plan.tensors(), plan._where())
    tok = None
    if with_tokenizer:
        from zerollm.interop.hf_tokenizer import load_hf_tokenizer

        tok = load_hf_tokenizer(directory)
    return model.to(device).eval(), tok, Path(directory)


def convert_hf(src: str | Path, out: str | Path) -> Path:
    """HF model dir -> zerollm checkpoint dir (weights streamed in their stored dtype), written atomically."""
    src, out = Path(src), Path(out)
    plan = ImportPlan(src)
    tok = load_hf_tokenizer(src)
    shapes = our_shapes(plan.cfg)
    dtypes: dict[str, torch.dtype] = {}
    for rule in plan.rules:  # each of our tensors keeps the dtype of the HF tensor it comes from
        tag = plan.source.dtypes[plan.stored[rule.theirs[0]]]
        for n in rule.ours:
            dtypes[n] = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                         "F64": torch.float32}[tag]
    specs = [(n, shapes[n], dtypes[n]) for rule in plan.rules for n in rule.ours]
    with atomic_dir(out, "checkpoint") as tmp:
        atomic_write_text(tmp / "config.json", json.dumps(plan.cfg.to_dict(), indent=2) + "\n")
        write_safetensors(tmp / "model.safetensors", specs, plan.tensors(), metadata={"format": "pt"})
        if tok is not None:
            tok.save(tmp / "tokenizer")
            save_affixes(tok, tmp / "tokenizer")  # the BOS/EOS transformers adds to a text
            template = load_chat_template(src)
            if template:
                atomic_write_text(tmp / "tokenizer" / CHAT_TEMPLATE_FILE, template)
            if (src / "tokenizer_config.json").is_file():
                atomic_write_json(tmp / "tokenizer" / HF_CONFIG_FILE, read_json(src / "tokenizer_config.json"))
        if (src / "generation_config.json").is_file():
            atomic_write_json(tmp / "generation_config.json", read_json(src / "generation_config.json"))
        n_params = sum(math.prod(shape) for shape in shapes.values())
        write_manifest(tmp, "checkpoint", step=0, tokens_seen=0, n_params=n_params,
                       source={"format": "hf", "model_type": plan.model_type, "path": str(src), "dtype": plan.dtype})
    return out


# ----------------------------------------------------------------------------------------------------------
# export


def generation_eos_ids(tok, model_dir: Path | None = None) -> list[int]:
    """End ids for generation_config.json: an existing list (converted models), else eos and <|im_end|>."""
    if model_dir is not None and (model_dir / "generation_config.json").is_file():
        eos = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
        if eos is not None:
            return [eos] if isinstance(eos, int) else list(eos)
    ids = [tok.eos_id] if tok is not None and tok.eos_id is not None else []
    im_end = (tok.special_tokens if tok is not None else {}).get("<|im_end|>")
    return ids + ([im_end] if im_end is not None and im_end not in ids else [])


def default_chat_template(tok) -> str | None:
    """ChatML when the tokenizer has zerollm's <|im_start|>/<|im_end|> specials."""
    specials = tok.special_tokens if tok is not None else {}
    return CHATML_TEMPLATE if "<|im_start|>" in specials and "<|im_end|>" in specials else None


def export_hf(model, tok, out: str | Path, model_dir: str | Path | None = None,
              dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (+ tokenizer) as an HF model directory, atomically."""
    cfg: ModelConfig = model.cfg
    mt = hf_model_type(cfg)
    rules = rules_for(mt, cfg)
    model_dir = Path(model_dir) if model_dir is not None else None
    params = dict(model.state_dict())
    specs = [(name, tuple(t.shape), dtype) for rule in rules
             for name, t in zip(rule.theirs, rule.to_theirs([shape_probe(params[n].shape) for n in rule.ours]))]

    def produce() -> Iterator[tuple[str, torch.Tensor]]:
        for rule in rules:
            yield from zip(rule.theirs, rule.to_theirs([params[n] for n in rule.ours]))

    eos = generation_eos_ids(tok, model_dir)
    roles = tok.roles if tok is not None else {}
    if type(tok).__name__ == "SentencePieceTokenizer":
        ids = {"bos": 1, "eos": 2, "pad": None}
    else:
        ids = {r: (tok.special_tokens[roles[r]] if r in roles else None) for r in ("bos", "eos", "pad")}
    if ids["eos"] is None and eos:
        ids["eos"] = eos[0]
    template = (load_chat_template(model_dir) if model_dir is not None else None) or default_chat_template(tok)
    dtype_name = str(dtype).removeprefix("torch.")
    with atomic_dir(Path(out), "hf_export") as tmp:
        write_manifest(tmp, "hf_export")  # lets a later export replace this one (artifacts.atomic_dir)
        atomic_write_json(tmp / "config.json", config_to_hf(cfg, ids["bos"], ids["eos"], ids["pad"], dtype_name))
        write_safetensors(tmp / "model.safetensors", specs, produce(), metadata={"format": "pt"})
        gen = {"bos_token_id": ids["bos"], "eos_token_id": eos if len(eos) > 1 else (eos[0] if eos else None),
               "pad_token_id": ids["pad"], "_from_model_config": False}
        atomic_write_json(tmp / "generation_config.json", gen)
        if tok is not None:
            write_hf_tokenizer(tok, tmp, chat_template=template, model_max_length=cfg.max_seq_len)
    return Path(out)


# ----------------------------------------------------------------------------------------------------------
# in-memory transformers models (parity tests, benchmarks)


def from_hf_model(hf_model) -> "torch.nn.Module":
    """A zerollm Transformer with the weights of an in-memory transformers causal LM (any supported arch)."""
    d = hf_model.config.to_dict()
    cfg = config_from_hf(d, f"{type(hf_model).__name__}.config")
    sd = hf_model.state_dict()
    names = set(sd)

    def produce():
        for rule in rules_for(d["model_type"], cfg):
            got = [sd[next(c for c in _candidates(n) if c in names)] for n in rule.theirs]
            yield from zip(rule.ours, rule.to_ours(got))
    model = empty_model(cfg, dtype=torch.float32)
    load_into(model, produce(), type(hf_model).__name__)
    return model.to(hf_model.device).eval()


def to_hf_model(model, bos_id: int | None = None, eos_id: int | None = None):
    """A transformers causal LM (fp32, eval mode) holding our model's weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = model.cfg
    special = cfg.vocab_size - 1
    d = config_to_hf(cfg, special if bos_id is None else bos_id, special if eos_id is None else eos_id)
    d = {k: v for k, v in d.items() if k not in ("architectures", "torch_dtype", "dtype", "use_cache")}
    hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d), dtype=torch.float32)
    params = model.state_dict()
    sd = {}
    for rule in rules_for(hf_model_type(cfg), cfg):
        sd.update(zip(rule.theirs, (t.contiguous() for t in rule.to_theirs([params[n] for n in rule.ours]))))
    names = set(hf.state_dict())  # in-memory names may differ from checkpoint names (NeoX embed_out)
    sd = {next((c for c in _candidates(k) if c in names), k): v for k, v in sd.items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not IGNORED.search(k) and not (cfg.tie_embeddings and k in _candidates(
        tied_head_name(hf_model_type(cfg))))]
    if missing or unexpected:
        raise InteropError(f"export to {type(hf).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if cfg.tie_embeddings:
        hf.tie_weights()
    return hf.to(model.device).eval()


__all__ = ["is_hf_dir", "read_hf_config", "hf_weight_source", "ImportPlan", "load_hf", "convert_hf", "export_hf",
           "config_from_hf", "config_to_hf", "hf_model_type",
           "from_hf_model", "to_hf_model"]
