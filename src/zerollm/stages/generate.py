"""`zerollm generate`: text from a model (any `--model DIR`), through the engine.

    zerollm generate --model DIR --prompt "..." [--do-sample --temperature 0.8 --top-k 50 ...] [--num-beams 4]
                     [--json-schema FILE | --regex RE] [--draft SMALL_DIR] [--logprobs N]

Defaults, the same in Python and on the command line, are transformers' (engine.hf_generate.resolve_sampling):
greedy unless `do_sample` is set or a temperature > 0 is given; when sampling, temperature 1.0 and top_k 50
unless given (top_k 0 turns top-k off). `max_length` counts the prompt's tokens, `max_new_tokens` does not
(and wins when both are given). `num_return_sequences` > 1 returns a list of texts.

Sampling, streaming, stop strings and constraints go through engine.Engine; beam search (engine/beam.py)
and speculative decoding (engine/speculative.py) are the two other decoders.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from zerollm.engine.constrained import JSONSchemaConstraint, RegexConstraint
from zerollm.engine.generate import GenerationConfig, generate_text
from zerollm.engine.hf_generate import resolve_sampling
from zerollm.loading import load_for_use


@dataclass
class GenerateConfig:
    """The generate stage's own options; the sampling options are engine.config.GenerationConfig's."""
    model: str = field(default="",
                       metadata={"required": True, "help": "checkpoint, run or Hugging Face model directory"})
    prompt: str = field(default="", metadata={"help": "prompt text ('-' reads stdin)"})
    logit_bias: list = field(default_factory=list, metadata={"metavar": "ID=BIAS", "help": "repeatable"})
    early_stopping: str = field(default="false", metadata={"choices": ("true", "false", "never")})
    device: str = "auto"
    stream: bool = field(default=True, metadata={"help": "print text as it is generated (--no-stream: at the end)"})
    json_schema: str | None = field(default=None, metadata={"help": "JSON Schema file: output is valid JSON for it"})
    regex: str | None = field(default=None, metadata={"help": "output must match this regex"})
    draft: str | None = field(default=None,
                              metadata={"help": "smaller model (same tokenizer) for speculative decoding"})
    draft_tokens: int = field(default=4, metadata={"help": "tokens the draft proposes per target forward"})
    do_sample: bool = field(default=False, metadata={"help": "sample (temperature 1.0, top-k 50 unless given); "
                                                             "default greedy, as transformers"})
    max_length: int | None = field(default=None, metadata={"help": "total length in tokens, prompt included "
                                                                   "(--max-new-tokens wins when given)"})


def generate(model: str | Path, prompt: str, *, stream: bool = False, device: str = "auto",
             do_sample: bool | None = None, max_length: int | None = None,
             **gen_kwargs) -> str | list[str] | Iterator[str]:
    """Generate a continuation of `prompt` (the text after it). `gen_kwargs` are GenerationConfig fields
    (max_new_tokens, temperature, top_k, top_p, repetition_penalty, num_beams, num_return_sequences,
    stop_strings, seed, ...), plus json_schema (a file) / regex for constrained output and draft (a model
    directory) / draft_tokens for speculative decoding with a smaller model of the same vocabulary
    (engine.generate.generate_text). Greedy unless do_sample=True or a temperature > 0 is given; see the
    module docstring for the defaults. num_return_sequences > 1: a list of texts."""
    json_schema, regex = gen_kwargs.pop("json_schema", None), gen_kwargs.pop("regex", None)
    draft, draft_tokens = gen_kwargs.pop("draft", None), gen_kwargs.pop("draft_tokens", 4)
    loaded = load_for_use(model, device)
    m, tok = loaded.model, loaded.tokenizer
    if json_schema and regex:
        raise ValueError("give --json-schema or --regex, not both")
    vocab = getattr(m.cfg, "vocab_size", tok.vocab_size) if hasattr(m, "cfg") else tok.vocab_size
    for tid in gen_kwargs.get("logit_bias") or {}:
        if not 0 <= tid < vocab:
            raise ValueError(f"--logit-bias token id {tid} is outside the vocabulary (0..{vocab - 1})")
    constraint = None
    if json_schema:
        constraint = JSONSchemaConstraint(json.loads(Path(json_schema).read_text(encoding="utf-8")), tok)
    elif regex:
        constraint = RegexConstraint(regex, tok)
    stops = list(gen_kwargs.pop("stop_token_ids", []) or [])
    stops += [i for i in loaded.stop_ids if i not in stops]
    sampling = resolve_sampling(do_sample, gen_kwargs.pop("temperature", None), gen_kwargs.pop("top_k", None),
                                gen_kwargs.pop("top_p", None), gen_kwargs.pop("min_p", None))
    gen_kwargs.update(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                      min_p=sampling.min_p)
    ids = tok.encode_special(prompt, suffix=False)  # an imported tokenizer's BOS, as transformers puts it
    if max_length is not None and gen_kwargs.get("max_new_tokens") is None:
        if max_length <= len(ids):
            raise ValueError(f"max_length={max_length} counts the prompt, which has {len(ids)} tokens already")
        gen_kwargs["max_new_tokens"] = max_length - len(ids)
    gen_kwargs = {k: v for k, v in gen_kwargs.items() if v is not None or k in ("top_k", "seed", "logprobs")}
    # an empty prompt starts a fresh document (generate_text: eos, else bos), as our shards do
    return generate_text(m, tok, ids, GenerationConfig(stop_token_ids=stops, **gen_kwargs),
                         constraint=constraint, draft_model=load_for_use(draft, device).model if draft else None,
                         draft_tokens=draft_tokens, stream=stream)


__all__ = ["generate"]
