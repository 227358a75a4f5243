"""Beam search equals transformers generate(num_beams=...) on a tiny GPT-2 converted from ours."""
from __future__ import annotations

import functools

import pytest
import torch

from zerollm.engine.beam import beam_search
from zerollm.engine.generate import GenerationConfig, generate


@pytest.fixture
def tiny_gpt2(tiny_model):
    """tiny_gpt2(seed): conftest's tiny model as a GPT-2 (LayerNorm, GELU, learned positions, biases, MHA)."""
    return functools.partial(tiny_model, vocab_size=61, n_kv_head=4, init_std=0.3, norm="layernorm", mlp="gelu",
                             position="learned", bias=True)


CASES = [
    dict(num_beams=3),
    dict(num_beams=4, length_penalty=0.5, early_stopping=True, num_return_sequences=2),
    dict(num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.4),
    dict(num_beams=2, early_stopping="never", length_penalty=2.0),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_beam_search_matches_transformers(case, tiny_gpt2):
    pytest.importorskip("transformers")
    from zerollm.interop.hf import to_hf_model

    kw = CASES[case]
    for seed in (0, 1):
        m = tiny_gpt2(seed)
        hf = to_hf_model(m)
        prompt = [5, 17, 33, 3]
        eos = 7  # a real eos so hypotheses finish early and the stopping rules matter
        ours = beam_search(m, prompt, GenerationConfig(max_new_tokens=12, temperature=0, stop_token_ids=[eos], **kw))
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=0,
                          eos_token_id=eos, attention_mask=torch.ones(1, 4, dtype=torch.long), **kw)
        for i, seq in enumerate(ours):
            want = ref[i, 4:].tolist()
            # HF pads shorter beams with pad_token_id after eos; cut at the first eos
            want = want[:want.index(eos)] if eos in want else want
            assert seq == want, (kw, seed, i)


def test_one_beam_is_greedy(tiny_gpt2):
    m = tiny_gpt2(2)
    cfg = GenerationConfig(max_new_tokens=10, temperature=0, stop_token_ids=[])
    assert beam_search(m, [1, 2, 3], GenerationConfig(**{**cfg.__dict__, "num_beams": 1})) == [
        generate(m, None, [1, 2, 3], cfg)]
