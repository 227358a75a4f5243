"""transformers-shaped entry points for the books' listings: `from_pretrained` and `pipeline`.

    model, tokenizer = zerollm.from_pretrained("gpt2")      # a directory, or a name in the local HF cache
    ids = torch.tensor([tokenizer.encode("Once upon a time")])
    out = model.generate(ids, max_length=50, do_sample=True, top_k=50)   # engine/hf_generate.py
    tokenizer.decode(out[0].tolist())

    generator = zerollm.pipeline("text-generation", model="gpt2")   # or model=model, tokenizer=tokenizer
    generator("Once upon a time", max_length=50, num_return_sequences=2)  # [{"generated_text": ...}, ...]

Loading goes through the one loader (loading.load: zerollm checkpoints, run dirs, Hugging Face dirs); names
resolve offline through interop/hf_cache.py. The loaded model carries `generation_config`, a dict of its
directory's generation defaults (eos/pad/bos ids from config.json, then generation_config.json, then the
tokenizer's end ids), which `model.generate` reads as transformers reads `model.generation_config`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from zerollm.engine.hf_generate import HF_DEFAULTS
from zerollm.interop.hf_cache import resolve_model_dir
from zerollm.loading import load

_ID_KEYS = ("eos_token_id", "pad_token_id", "bos_token_id")


def generation_defaults(model_dir: str | Path, stop_ids=()) -> dict:
    """transformers' view of a directory's generation defaults: ids from config.json, everything
    generation_config.json sets, and the end ids (`stop_ids`) when neither names an eos."""
    out: dict = {}
    for name, keys in (("config.json", _ID_KEYS), ("generation_config.json", tuple(HF_DEFAULTS))):
        f = Path(model_dir) / name
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}: not valid JSON ({e})") from None
            out.update({k: data[k] for k in keys if data.get(k) is not None})
    if "eos_token_id" not in out and stop_ids:
        out["eos_token_id"] = list(stop_ids)
    return out


def from_pretrained(name_or_dir: str | Path, device: str = "cpu", revision: str = "main"):
    """(model, tokenizer) from a model directory or a hub name found in the local Hugging Face cache
    (`revision`: a branch or commit; offline only). The model has transformers' `generate` (see module
    docstring); the tokenizer is zerollm's (encode / decode), or None when the directory has none."""
    loaded = load(resolve_model_dir(name_or_dir, revision), device)
    loaded.model.generation_config = generation_defaults(loaded.path, loaded.stop_ids)
    return loaded.model, loaded.tokenizer


# transformers' text-generation pipeline defaults (transformers/pipelines/text_generation.py)
PIPELINE_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}


class TextGenerationPipeline:
    """`pipeline("text-generation")`: text in, `[{"generated_text": prompt + continuation}]` out (a list of
    such lists for a list of prompts). Defaults are transformers' for this pipeline (sampling, temperature
    0.7, top_k 50, 256 new tokens) unless the model's generation_config.json sets them; keywords override."""

    def __init__(self, model, tokenizer):
        if tokenizer is None:
            raise ValueError("the text-generation pipeline needs a tokenizer (pass tokenizer=...)")
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, text, return_full_text: bool = True, **kwargs):
        if isinstance(text, (list, tuple)):
            return [self(t, return_full_text=return_full_text, **kwargs) for t in text]
        own = getattr(self.model, "generation_config", None) or {}
        defaults = {k: v for k, v in PIPELINE_DEFAULTS.items() if k not in own}
        if "max_length" in kwargs:
            defaults.pop("max_new_tokens", None)
        ids = self.tokenizer.encode(text)
        if not ids:
            bos = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id
            ids = [bos]
        out = self.model.generate(torch.tensor([ids]), **{**defaults, **kwargs})
        hidden = set(getattr(self.tokenizer, "special_tokens", {}).values())  # skip_special_tokens=True
        results = []
        for row in out.tolist():
            new = self.tokenizer.decode([t for t in row[len(ids):] if t not in hidden])
            results.append({"generated_text": text + new if return_full_text else new})
        return results


def pipeline(task: str, model=None, tokenizer=None, device: str = "cpu", **kwargs) -> TextGenerationPipeline:
    """transformers' `pipeline(...)` for the one task zerollm's models do: "text-generation". `model` is a
    loaded zerollm model (then give `tokenizer`) or a directory / cached hub name."""
    if task != "text-generation":
        raise ValueError(f"pipeline task {task!r} is not supported (zerollm has 'text-generation')")
    if kwargs:
        raise TypeError(f"pipeline() got unsupported keyword(s) {sorted(kwargs)}")
    if model is None:
        raise ValueError("pipeline('text-generation') needs model= (a directory, a cached hub name or a model)")
    if isinstance(model, (str, Path)):
        model, own_tok = from_pretrained(model, device)
        tokenizer = tokenizer or own_tok
    return TextGenerationPipeline(model, tokenizer)


__all__ = ["from_pretrained", "pipeline", "TextGenerationPipeline", "generation_defaults"]
