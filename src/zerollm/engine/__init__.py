"""Text generation. Three decoders, all on the model's KV cache (model/kv_cache.py), the logits processors and
samplers of sampling.py, and the native decode step (native.py, when `optimize_for_decode` attached it):

    engine.py        `Engine`: continuous batching, streaming, stop strings, logprobs, constrained output
                     (Request(constraint=JSONSchemaConstraint | RegexConstraint)). Every sampled or greedy
                     generation runs here; generate() / stream() / generate_text() are a batch of one.
    beam.py          `beam_search`: deterministic beam search (HF's algorithm)
    speculative.py   `speculative_generate`: a draft model proposes, the target verifies

reference.py holds the plain textbook loop the Engine is tested against; config.py GenerationConfig and the
stop rules."""
from .config import GenerationConfig
from .generate import TextStream, generate, generate_text, stream
from .sampling import (apply_repetition_penalty, apply_temperature, min_p_filter, process_logits, sample_next,
                       top_k_filter, top_p_filter)

__all__ = ["GenerationConfig", "TextStream", "generate", "stream", "generate_text", "sample_next",
           "process_logits", "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter",
           "apply_repetition_penalty", "Engine", "Request", "beam_search", "speculative_generate",
           "JSONSchemaConstraint", "RegexConstraint", "optimize_for_decode"]


def __getattr__(name):  # lazy: engine/beam/speculative/constrained/native import on first use
    if name in ("Engine", "Request"):
        from . import engine
        return getattr(engine, name)
    if name == "beam_search":
        from .beam import beam_search
        return beam_search
    if name == "speculative_generate":
        from .speculative import speculative_generate
        return speculative_generate
    if name in ("JSONSchemaConstraint", "RegexConstraint"):
        from . import constrained
        return getattr(constrained, name)
    if name == "optimize_for_decode":
        from .native import optimize_for_decode
        return optimize_for_decode
    raise AttributeError(name)
