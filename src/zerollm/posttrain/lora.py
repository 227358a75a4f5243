"""LoRA (Hu et al. 2021), written here: low-rank adapters on chosen linear layers, merge/unmerge, and
adapters saved and loaded in PEFT's file format. QLoRA (the same adapters over a 4-bit NF4 base) is qlora.py.

Math (Hu et al. 2021, eq. 3): a frozen weight W (out, in) gets a trainable low-rank update

    h = W x + s · B A dropout(x),      A (r, in) ~ Kaiming-uniform, B (out, r) = 0 at start,
    s = alpha / r                      (rsLoRA, Kalajdzievski 2023: s = alpha / sqrt(r))

so training starts at the base model. Merging folds the update into the weight, W ← W + s·B A (inference
costs nothing extra); unmerging subtracts it again (equal to the original up to float rounding, ~1e-7).

Targets are module-name patterns, matched the way PEFT matches `target_modules`: a name matches a pattern
when it equals it or ends with "." + it, or a single regex string is matched against the whole name. Both
our names (model/transformer.py: `blocks.{i}.attn.{q,k,v,o}_proj`, `blocks.{i}.mlp.{fc,proj}` |
`{gate,up,down}_proj`) and the architecture's Hugging Face names are accepted (`["c_attn", "c_proj"]` on
GPT-2, `["query_key_value", "dense"]` on NeoX, `["q_proj", "o_proj"]` on Llama); the HF name of each of our
modules comes from interop/hf_arch.py's weight table (`hf_module_names`). `"all-linear"` is PEFT's: every
linear layer of the blocks, not the output head. A fused HF layer targeted by its HF name (GPT-2 `c_attn`,
NeoX `query_key_value`) gets what PEFT gives it, one rank-r adapter: our q, k, v adapters share one A
(r, D) and keep their own B, so trainable counts equal PEFT's (r·D + 3·D·r) — see "Fused q/k/v" below.

PEFT files (interop.md §2): `adapter_config.json` + `adapter_model.safetensors` with keys
`base_model.model.<HF module>.lora_{A,B}.weight`. Our module ↔ HF module:

    llama/mistral/qwen2/qwen3  blocks.{i}.attn.X  ↔ model.layers.{i}.self_attn.X,   blocks.{i}.mlp.X ↔ model.layers.{i}.mlp.X
    gpt2                       blocks.{i}.attn.o_proj ↔ transformer.h.{i}.attn.c_proj,  mlp.fc ↔ mlp.c_fc,
                               mlp.proj ↔ mlp.c_proj,  attn.{q,k,v}_proj ↔ one fused attn.c_attn
    gpt_neox                   blocks.{i}.attn.o_proj ↔ gpt_neox.layers.{i}.attention.dense,
                               mlp.fc ↔ mlp.dense_h_to_4h,  mlp.proj ↔ mlp.dense_4h_to_h,
                               attn.{q,k,v}_proj ↔ one fused attention.query_key_value

Fused q/k/v (GPT-2 c_attn, NeoX query_key_value): three rank-r adapters on q, k, v are exactly one rank-3r
adapter on the fused layer with A = [A_q; A_k; A_v] (3r, D) and B = blockdiag(B_q, B_k, B_v) (3D, 3r) —
for NeoX with B's rows put in the fused weight's per-head interleaved order [q_h; k_h; v_h] (the same row
permutation the importer applies to the weight, interop.hf_arch._neox_qkv). `rank_pattern`/`alpha_pattern`
give the fused layer its rank 3r and the alpha that keeps the same scale. The other way, a PEFT adapter on
the fused layer (A, B) is q/k/v adapters sharing A with B's rows split (de-interleaved for NeoX). Both
directions are exact.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zerollm.artifacts import atomic_dir, atomic_write_text, write_manifest
from zerollm.interop.hf_arch import _neox_qkv, hf_model_type, hf_module_names
from zerollm.interop.weights import InteropError

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "fc", "proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list = field(default_factory=lambda: list(DEFAULT_TARGETS))  # or a regex string, or "all-linear"
    rslora: bool = False
    train_head: bool = False  # also train extra heads (value/reward) — they are always trainable


class LoRAMixin:
    """Adds lora_A, lora_B (and merge state) to a linear layer whose forward gives W x + b."""

    def _init_lora(self, in_features: int, out_features: int, r: int, alpha: float, dropout: float,
                   rslora: bool, device=None) -> None:
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        self.r, self.alpha, self.rslora = r, float(alpha), rslora
        self.scaling = self.alpha / (math.sqrt(r) if rslora else r)
        self.lora_A = nn.Parameter(torch.empty(r, in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear / PEFT
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, in)

    def lora_forward(self, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return base_out
        a = F.linear(self.lora_dropout(x), self.lora_A.to(x.dtype))  # (..., r)
        # in place: base_out is a fresh linear output that autograd does not save (one temporary less)
        return base_out.add_(F.linear(a, self.lora_B.to(x.dtype)), alpha=self.scaling)


class LoRALinear(LoRAMixin, nn.Linear):
    """An nn.Linear that keeps the original weight/bias Parameters (same names, no copy) plus LoRA."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self._init_lora(self.in_features, self.out_features, r, alpha, dropout, rslora, base.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_forward(x, F.linear(x, self.weight, self.bias))

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False


# base layer type → the LoRA layer that wraps it. qlora.py adds NF4Linear → NF4LoRALinear when imported
# (an NF4Linear cannot exist before), so this module needs to know nothing of NF4.
LORA_LAYERS: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: LoRALinear}


def matches(name: str, targets) -> bool:
    """PEFT's rule: a list entry matches a name equal to it or ending in "." + it; a string is a full regex."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def hf_names(model: nn.Module) -> dict[str, str]:
    """Our module name -> its Hugging Face module name (empty when no HF architecture runs this config)."""
    try:
        return hf_module_names(hf_model_type(model.cfg), model.cfg)
    except (InteropError, AttributeError):
        return {}


def resolve_targets(model: nn.Module, targets) -> tuple[list[str], list[list[str]]]:
    """(our linear layers that `targets` picks, groups of them that share one A). A target matches a layer by
    our name or by its HF name; a fused HF layer picked by its HF name (or by "all-linear") is one group."""
    linear = [n for n, m in model.named_modules()
              if isinstance(m, tuple(LORA_LAYERS)) and not isinstance(m, LoRAMixin)]
    hf = hf_names(model)
    if targets == "all-linear" or targets == ["all-linear"]:  # PEFT: all linear layers but the output layer
        names = [n for n in linear if n.startswith("blocks.")]
        via_hf = set(names)
    else:
        names = [n for n in linear if matches(n, targets) or (n in hf and matches(hf[n], targets))]
        via_hf = {n for n in names if not matches(n, targets)}
    by_hf: dict[str, list[str]] = {}
    for n in names:
        if n in via_hf and n in hf:
            by_hf.setdefault(hf[n], []).append(n)
    return names, [g for g in by_hf.values() if len(g) > 1]


def share_lora_A(model: nn.Module, groups: list[list[str]]) -> None:
    """Tie the A of each group to its first member's: q/k/v adapters that are one adapter on a fused layer."""
    for group in groups:
        first = model.get_submodule(group[0])
        for n in group[1:]:
            mod = model.get_submodule(n)
            if mod.lora_A.shape != first.lora_A.shape:
                raise ValueError(f"{n}: cannot share LoRA A with {group[0]} (shapes differ)")
            mod.lora_A = first.lora_A


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _wrap(module: nn.Module, r: int, alpha: float, dropout: float, rslora: bool) -> nn.Module:
    for base, lora_cls in LORA_LAYERS.items():
        if isinstance(module, base):
            return lora_cls(module, r, alpha, dropout, rslora)
    raise TypeError(f"cannot put LoRA on {type(module).__name__}")


def apply_lora(model: nn.Module, cfg: LoRAConfig, per_module: dict[str, tuple[int, float]] | None = None,
               freeze: bool = True) -> list[str]:
    """Replace matching linear layers with LoRA layers (in place); freeze everything else. Returns the names.
    `per_module` overrides (r, alpha) by module name (used when loading adapters)."""
    if per_module is None:
        names, groups = resolve_targets(model, cfg.targets)
    else:
        names = [n for n, m in model.named_modules()
                 if isinstance(m, tuple(LORA_LAYERS)) and not isinstance(m, LoRAMixin) and n in per_module]
        groups = []
    if not names:
        raise ValueError(f"LoRA targets {cfg.targets!r} match no linear layer of the model")
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    for n in names:
        r, alpha = (per_module or {}).get(n, (cfg.r, cfg.alpha))
        _set_module(model, n, _wrap(model.get_submodule(n), r, alpha, cfg.dropout, cfg.rslora))
    share_lora_A(model, groups)
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRAMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRAMixin)}


def merge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.unmerge()


@torch.no_grad()
def strip_lora(model: nn.Module) -> nn.Module:
    """Merge and put plain nn.Linear layers back (same Parameters): a model any checkpoint code can save."""
    for name, m in lora_modules(model).items():
        if not isinstance(m, LoRALinear):
            raise ValueError(f"{name}: a quantized (QLoRA) layer cannot be merged into full weights here")
        m.merge()
        plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
        plain.weight, plain.bias = m.weight, m.bias
        _set_module(model, name, plain)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters)."""
    ps = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)


# ----------------------------------------------------------------------------------------------------------
# PEFT format


def _hf_type(model: nn.Module) -> str:
    mt = hf_model_type(model.cfg)
    if mt not in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox"):
        raise ValueError(f"PEFT adapters: architecture {mt!r} is not mapped (gpt2, llama, mistral, qwen2/3, "
                         f"gpt_neox are)")
    return mt


_QKV = ("attn.q_proj", "attn.k_proj", "attn.v_proj")


def _fused(hf_of: dict[str, str]) -> dict[str, list[str]]:
    """HF modules that hold more than one of ours (GPT-2 c_attn, NeoX query_key_value) -> ours, in q, k, v order."""
    ours_of: dict[str, list[str]] = {}
    for ours, hf in hf_of.items():
        ours_of.setdefault(hf, []).append(ours)
    return {hf: names for hf, names in ours_of.items() if len(names) > 1}


def _fused_rows(model: nn.Module, mt: str, to_ours: bool):
    """Row permutation between [q; k; v] stacked B rows and the fused HF layer's rows: identity for GPT-2,
    NeoX's per-head interleave otherwise (the importer's rule for the weight, so adapter and weight agree)."""
    if mt != "gpt_neox":
        return (lambda b: list(b.chunk(3, 0))) if to_ours else (lambda parts: torch.cat(parts, 0))

    rule = _neox_qkv(("q", "k", "v"), "query_key_value", model.cfg.n_head)
    return (lambda b: rule.to_ours([b])) if to_ours else (lambda parts: rule.to_theirs(parts)[0])


def save_adapter(model: nn.Module, out: str | Path, base_model_name_or_path: str = "",
                 extra: dict | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that `peft.PeftModel.from_pretrained` loads
    onto the HF export of the base model."""
    from safetensors.torch import save_file

    mt = _hf_type(model)
    mods = lora_modules(model)
    if not mods:
        raise ValueError("model has no LoRA layers")
    first = next(iter(mods.values()))
    r, alpha, rslora = first.r, first.alpha, first.rslora
    tensors: dict[str, torch.Tensor] = {}
    rank_pattern, alpha_pattern, saved = {}, {}, set()
    groups: dict[str, list[tuple[str, LoRAMixin]]] = {}
    hf_of = hf_names(model)
    fused = _fused(hf_of)
    for name, m in mods.items():
        if m.rslora != rslora:
            raise ValueError("all LoRA layers must agree on rslora to be saved as one PEFT adapter")
        if name not in hf_of:
            raise ValueError(f"{name}: {mt} has no module for it")
        groups.setdefault(hf_of[name], []).append((name, m))
    for hf, members in groups.items():
        if hf in fused:
            got = {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1]: m for n, m in members}
            if set(got) != set(_QKV):
                raise ValueError(f"{hf}: {mt} fuses q/k/v into one layer, so LoRA must target all three of "
                                 f"q_proj, k_proj, v_proj (got {sorted(got)})")
            parts = [got[k] for k in _QKV]
            if len({(p.r, p.alpha) for p in parts}) != 1:
                raise ValueError(f"{hf}: q/k/v adapters need one rank and alpha")
            if parts[0].lora_A is parts[1].lora_A is parts[2].lora_A:  # one shared A: PEFT's own rank-r layer
                A = parts[0].lora_A.detach()
                B = _fused_rows(model, mt, to_ours=False)([p.lora_B.detach() for p in parts])
                rr, aa = parts[0].r, parts[0].alpha
            else:
                A = torch.cat([p.lora_A.detach() for p in parts], 0)  # (3r, D)
                Bd = torch.block_diag(*[p.lora_B.detach() for p in parts])  # (3D, 3r), rows [q; k; v]
                B = _fused_rows(model, mt, to_ours=False)(list(Bd.chunk(3, 0)))  # rows in the fused layer's order
                rr = A.shape[0]
                # same scale s at rank 3r: alpha'/3r = alpha/r (or alpha'/sqrt(3r) = alpha/sqrt(r) for rsLoRA)
                aa = parts[0].scaling * (math.sqrt(rr) if rslora else rr)
        else:
            (_, m), = members
            A, B, rr, aa = m.lora_A.detach(), m.lora_B.detach(), m.r, m.alpha
        if rr != r or not math.isclose(aa, alpha):
            leaf = hf.rsplit(".", 1)[-1]
            rank_pattern[hf if leaf in rank_pattern else leaf] = rr
            alpha_pattern[hf if leaf in alpha_pattern else leaf] = aa
        tensors[f"base_model.model.{hf}.lora_A.weight"] = A.float().contiguous().cpu()
        tensors[f"base_model.model.{hf}.lora_B.weight"] = B.float().contiguous().cpu()
        saved.add(hf)
    leaves = {h.rsplit(".", 1)[-1] for h in saved}
    all_hf = {hf_of[n] for n, mod in model.named_modules()
              if n in hf_of and n.startswith("blocks.") and isinstance(mod, tuple(LORA_LAYERS))}
    # leaf names when they pick exactly the adapted modules, else full paths
    exact = {h for h in all_hf if h.rsplit(".", 1)[-1] in leaves} == saved
    target_modules = sorted(leaves) if exact else sorted(saved)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
              "r": r, "lora_alpha": alpha, "lora_dropout": float(getattr(first.lora_dropout, "p", 0.0)),
              "target_modules": target_modules, "bias": "none", "fan_in_fan_out": mt == "gpt2",
              "use_rslora": rslora, "use_dora": False, "modules_to_save": None, "inference_mode": True,
              "init_lora_weights": True, "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
              **(extra or {})}
    with atomic_dir(Path(out), "adapter") as tmp:
        write_manifest(tmp, "adapter")  # lets a later save replace this one (artifacts.atomic_dir)
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        atomic_write_text(tmp / "adapter_config.json", json.dumps(config, indent=2) + "\n")
    return Path(out)


def _pattern_value(patterns: dict, hf: str, default):
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches a module path ending in it (as a regex)."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", hf):
            return value
    return default


def load_adapter(model: nn.Module, adapter_dir: str | Path, dropout: float | None = None) -> list[str]:
    """Apply a PEFT LoRA adapter (ours or made by `peft`) to a plain model, in place; base frozen."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg_path = adapter_dir / "adapter_config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg_path}: cannot read adapter config ({e})") from None
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for unsupported in ("use_dora",):
        if cfg.get(unsupported):
            raise ValueError(f"{cfg_path}: {unsupported}=true is not supported")
    if cfg.get("modules_to_save"):
        raise ValueError(f"{cfg_path}: modules_to_save {cfg['modules_to_save']} is not supported")
    mt = _hf_type(model)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    r0, alpha0, rslora = int(cfg["r"]), float(cfg["lora_alpha"]), bool(cfg.get("use_rslora", False))
    # our module names for each HF module
    hf_of = hf_names(model)
    ours_of: dict[str, list[str]] = {}  # in the table's order: q, k, v for a fused layer
    for n, mod in model.named_modules():
        if n in hf_of and n.startswith("blocks.") and isinstance(mod, nn.Linear):
            ours_of.setdefault(hf_of[n], []).append(n)
    groups: list[list[str]] = []
    plan: dict[str, tuple[int, float]] = {}
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, A in tensors.items():
        m = re.fullmatch(r"base_model\.model\.(.+)\.lora_A(?:\.\w+)?\.weight", key)
        if not m:
            if ".lora_B" not in key:
                raise ValueError(f"{adapter_dir}: unexpected tensor {key}")
            continue
        hf = m.group(1)
        B = tensors.get(key.replace(".lora_A", ".lora_B"))
        if hf not in ours_of or B is None:
            raise ValueError(f"{adapter_dir}: {key} names no {mt} module of this model (or has no lora_B)")
        r = int(_pattern_value(cfg.get("rank_pattern"), hf, r0))
        alpha = float(_pattern_value(cfg.get("alpha_pattern"), hf, alpha0))
        if A.shape[0] != r:
            raise ValueError(f"{adapter_dir}: {key} has rank {A.shape[0]}, config says {r}")
        names = ours_of[hf]
        if len(names) > 1:
            groups.append(names)  # one PEFT layer: our parts share its A, as in training
        if len(names) > 1 and B.shape[0] % len(names):
            raise ValueError(f"{adapter_dir}: {key} cannot be split over {names}")
        rows = _fused_rows(model, mt, to_ours=True)(B) if len(names) == 3 else B.chunk(len(names), 0)
        for name, b in zip(names, rows):
            plan[name] = (r, alpha)
            weights[name] = (A, b)
    apply_lora(model, LoRAConfig(dropout=cfg.get("lora_dropout", 0.0) if dropout is None else dropout,
                                 rslora=rslora), per_module=plan)
    share_lora_A(model, groups)
    with torch.no_grad():
        for name, (A, B) in weights.items():
            mod = model.get_submodule(name)
            if tuple(A.shape) != tuple(mod.lora_A.shape) or tuple(B.shape) != tuple(mod.lora_B.shape):
                raise ValueError(f"{adapter_dir}: {name} shapes A{tuple(A.shape)} B{tuple(B.shape)} do not fit "
                                 f"A{tuple(mod.lora_A.shape)} B{tuple(mod.lora_B.shape)}")
            mod.lora_A.copy_(A)
            mod.lora_B.copy_(B)
    return list(plan)


def lora_config_dict(cfg: LoRAConfig) -> dict:
    return asdict(cfg)


__all__ = ["LoRAConfig", "LoRALinear", "apply_lora", "merge_lora", "unmerge_lora", "strip_lora", "lora_modules",
           "trainable_share", "save_adapter", "load_adapter", "hf_names", "resolve_targets", "DEFAULT_TARGETS"]
