"""`GenerationMixin`: gives every zerollm language model transformers' `model.generate(input_ids, ...)`.

The decoding itself lives in the engine (engine/hf_generate.py → engine/engine.py, engine/beam.py); this
mixin only forwards the call, importing the engine when it is first used so that model/ never imports
engine/ at module level (the engine imports the model, not the other way round).
"""
from __future__ import annotations


class GenerationMixin:
    def generate(self, input_ids, attention_mask=None, generation_config=None, **kwargs):
        """transformers-style generation: greedy unless do_sample=True, beams when num_beams > 1; returns a
        LongTensor (batch * num_return_sequences, length) of prompt + new ids. Keywords and defaults:
        zerollm.engine.hf_generate."""
        from zerollm.engine.hf_generate import generate

        return generate(self, input_ids, attention_mask, generation_config, **kwargs)
