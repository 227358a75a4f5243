"""Text generation. Three decoders, all on the model's KV cache (model/kv_cache.py), the logits processors and
samplers of sampling.py, and the native decode step (native.py, when `optimize_for_decode` attached it):

    engine.py        `Engine`: continuous batching, streaming, stop strings, logprobs, constrained output
                     (Request(constraint=JSONSchemaConstraint | RegexConstraint)). Every sampled or greedy
                     generation runs here; generate() / stream() / generate_text() are a batch of one.
    beam.py          `beam_search`: deterministic beam search (HF's algorithm)
    speculative.py   `speculative_generate`: a draft model proposes, the target verifies

reference.py holds the plain textbook loop the Engine is tested against; config.py GenerationConfig and the
stop rules."""
from .beam import beam_search
from .config import GenerationConfig
from .constrained import JSONSchemaConstraint, RegexConstraint
from .engine import Engine, Request
from .generate import TextStream, generate, generate_text, stream
from .native import optimize_for_decode
from .sampling import (
                       apply_repetition_penalty,
                       apply_temperature,
                       min_p_filter,
                       process_logits,
                       sample_next,
                       top_k_filter,
                       top_p_filter,
)
from .speculative import speculative_generate

__all__ = ["GenerationConfig", "TextStream", "generate", "stream", "generate_text", "sample_next",
           "process_logits", "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter",
           "apply_repetition_penalty", "Engine", "Request", "beam_search", "speculative_generate",
           "JSONSchemaConstraint", "RegexConstraint", "optimize_for_decode"]
