"""`zerollm generate`: text from a model (any `--model DIR`), through the engine.

    zerollm generate --model DIR --prompt "..." [--temperature 0.8 --top-k 50 ...] [--num-beams 4]
                     [--json-schema FILE | --regex RE] [--draft SMALL_DIR] [--logprobs N]

Sampling, streaming, stop strings and constraints go through engine.Engine; beam search (engine/beam.py)
and speculative decoding (engine/speculative.py) are the two other decoders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from zerollm.loading import load_for_use


def generate(model: str | Path, prompt: str, *, stream: bool = False, device: str = "auto",
             **gen_kwargs) -> str | Iterator[str]:
    """Generate a continuation of `prompt`. `gen_kwargs` are GenerationConfig fields
    (max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop_strings, seed, ...), plus
    json_schema (a file) / regex for constrained output and draft (a model directory) / draft_tokens for
    speculative decoding with a smaller model of the same vocabulary."""
    from zerollm.engine.generate import GenerationConfig
    from zerollm.engine.generate import stream as _stream

    json_schema, regex = gen_kwargs.pop("json_schema", None), gen_kwargs.pop("regex", None)
    draft, draft_tokens = gen_kwargs.pop("draft", None), gen_kwargs.pop("draft_tokens", 4)
    loaded = load_for_use(model, device)
    m, tok = loaded.model, loaded.tokenizer
    constraint = None
    if json_schema or regex:
        import json as _json

        from zerollm.engine.constrained import JSONSchemaConstraint, RegexConstraint
        constraint = (RegexConstraint(regex, tok) if regex else JSONSchemaConstraint(
            _json.loads(Path(json_schema).read_text(encoding="utf-8")), tok))
    stops = list(gen_kwargs.pop("stop_token_ids", []) or [])
    stops += [i for i in loaded.stop_ids if i not in stops]
    gen = GenerationConfig(stop_token_ids=stops, **gen_kwargs)
    ids = tok.encode(prompt)
    if not ids:  # an empty prompt starts a fresh document: our shards put <|eos|> before every document
        ids = [tok.eos_id if tok.eos_id is not None else tok.bos_id]
    if draft is not None:
        text = _generate_speculative(m, tok, ids, gen, draft, draft_tokens, device)
        return iter([text]) if stream else text
    if constraint or gen.num_beams > 1 or gen.num_return_sequences > 1 or gen.logprobs is not None:
        return _generate_full(m, tok, ids, gen, constraint)
    text_stream = _stream(m, tok, ids, gen)
    return text_stream if stream else text_stream.read()  # read(): stop strings already cut


def _generate_speculative(m, tok, ids, gen, draft: str | Path, k: int, device: str) -> str:
    """Speculative decoding (engine/speculative.py): `draft` proposes k tokens, the target verifies them in one
    forward; the output follows the target's distribution (greedy: identical tokens)."""
    from zerollm.engine.generate import _first_stop
    from zerollm.engine.speculative import speculative_generate

    dm = load_for_use(draft, device).model
    if dm.cfg.vocab_size != m.cfg.vocab_size:
        raise ValueError(f"draft model {draft} has vocabulary {dm.cfg.vocab_size}, the target has "
                         f"{m.cfg.vocab_size}: speculative decoding needs the same tokenizer")
    text = tok.decode(speculative_generate(m, dm, ids, gen, num_draft=k, tokenizer=tok))
    cut = _first_stop(text, gen.stop_strings or [])
    return text if cut is None else text[:cut]


def _generate_full(m, tok, ids, gen, constraint) -> str:
    """Beam search, several sequences, logprobs or constrained output: whole completions as text."""
    from zerollm.engine.beam import beam_search
    from zerollm.engine.engine import Engine, Request

    if gen.num_beams > 1:
        return "\n---\n".join(tok.decode(s) for s in beam_search(m, ids, gen, tok))
    handle = Engine(m, tok, max_batch_size=max(1, gen.num_return_sequences)).submit(
        Request(ids, gen, constraint=constraint))
    out = []
    for c in handle.results():
        text = c.text
        if c.logprobs:
            rows = [f"{tok.decode([t])!r}\t{lp:.4f}" + ("\t" + " ".join(f"{tok.decode([i])!r}:{v:.3f}" for i, v in top)
                                                        if c.top_logprobs else "")
                    for t, lp, top in zip(c.token_ids, c.logprobs, c.top_logprobs or [[]] * len(c.token_ids))]
            text += "\n" + "\n".join(rows)
        out.append(text)
    return "\n---\n".join(out)


__all__ = ["generate"]
