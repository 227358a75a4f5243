"""Text generation: sampling (logits processors) and the cached decode loop."""
from .generate import GenerationConfig, TextStream, generate, iter_tokens, stream
from .sampling import (apply_repetition_penalty, apply_temperature, process_logits, sample_next, top_k_filter,
                       top_p_filter)

__all__ = ["GenerationConfig", "TextStream", "generate", "stream", "iter_tokens", "sample_next", "process_logits",
           "apply_temperature", "top_k_filter", "top_p_filter", "apply_repetition_penalty"]
