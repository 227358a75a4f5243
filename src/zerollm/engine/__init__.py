"""Text generation: sampling (logits processors), the single-sequence decode loop, the continuous-batching
`Engine`, beam search, speculative decoding and constrained (JSON Schema / regex) decoding."""
from .generate import GenerationConfig, TextStream, generate, iter_tokens, stream
from .sampling import (apply_repetition_penalty, apply_temperature, min_p_filter, process_logits, sample_next,
                       top_k_filter, top_p_filter)

__all__ = ["GenerationConfig", "TextStream", "generate", "stream", "iter_tokens", "sample_next", "process_logits",
           "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter", "apply_repetition_penalty",
           "Engine", "Request", "beam_search", "speculative_generate", "JSONSchemaConstraint", "RegexConstraint",
           "generate_constrained"]


def __getattr__(name):  # lazy: engine/beam/speculative/constrained import on first use
    if name in ("Engine", "Request"):
        from . import engine
        return getattr(engine, name)
    if name == "beam_search":
        from .beam import beam_search
        return beam_search
    if name == "speculative_generate":
        from .speculative import speculative_generate
        return speculative_generate
    if name in ("JSONSchemaConstraint", "RegexConstraint", "generate_constrained"):
        from . import constrained
        return getattr(constrained, name)
    raise AttributeError(name)
