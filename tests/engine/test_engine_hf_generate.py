"""`model.generate(...)` shaped like transformers': the books' generation listings give the same ids through
zerollm (engine/hf_generate.py on the Engine and beam search) and through transformers, on one tiny random
GPT-2 built with GPT2Config, saved, and loaded by zerollm through interop."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

V, EOS = 96, 7


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=EOS, eos_token_id=EOS, initializer_range=0.1)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    d = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(d)
    from zerollm.loading import load

    ours = load(d, "cpu", with_tokenizer=False).model
    return hf, ours


PROMPT = torch.tensor([[11, 23, 5, 42, 17, 3]])


def _both(pair, seed=None, prompt=PROMPT, **kw):
    hf, ours = pair
    outs = []
    for m in (hf, ours):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(m.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=EOS, **kw))
    return outs


@pytest.mark.parametrize("kw", [
    dict(max_length=30),                                                    # greedy (the default)
    dict(max_new_tokens=25, num_beams=5, early_stopping=True),              # beam 5
    dict(max_new_tokens=20, num_beams=5, num_return_sequences=3),           # the 3 best beams
    dict(max_length=40, no_repeat_ngram_size=2),                            # greedy without repeated bigrams
    dict(max_new_tokens=20, num_beams=4, no_repeat_ngram_size=2),
    dict(max_new_tokens=20, repetition_penalty=1.3),
    dict(max_length=30, eos_token_id=56),                                   # stops at an eos it emits
    dict(max_new_tokens=25, num_beams=5, num_return_sequences=3, eos_token_id=22),  # finished hypotheses
], ids=["greedy", "beam5", "beam5-n3", "no-repeat-2", "beam4-no-repeat-2", "rep-penalty", "greedy-eos",
        "beam-eos"])
def test_deterministic_listings_match_transformers(pair, kw):
    theirs, ours = _both(pair, **kw)
    assert ours.dtype == torch.long and ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kw", [
    dict(max_length=30, do_sample=True, top_k=50),                          # top-k
    dict(max_length=30, do_sample=True, top_p=0.9, top_k=0),                # nucleus alone
    dict(max_length=30, do_sample=True, temperature=0.7),                   # default top_k=50 applies
    dict(max_length=30, do_sample=True, num_return_sequences=3, temperature=0.8, top_k=50, top_p=0.95,
         no_repeat_ngram_size=2),                                           # the books' full listing
], ids=["top-k", "top-p", "temperature", "books-listing"])
def test_seeded_sampling_matches_transformers(pair, kw):
    """torch.manual_seed(s) then generate: our rows draw from the global RNG in transformers' order."""
    theirs, ours = _both(pair, seed=1234, eos_token_id=V + 1000, **kw)  # an eos it never emits: no early stop
    assert ours.shape == theirs.shape == (kw.get("num_return_sequences", 1), 30)
    assert torch.equal(ours, theirs)


def test_sampling_differs_from_greedy_and_by_seed(pair):
    _, ours = pair
    greedy = ours.generate(PROMPT, max_length=30, eos_token_id=V + 1000)
    a = [(torch.manual_seed(s), ours.generate(PROMPT, max_length=30, do_sample=True, eos_token_id=V + 1000))[1]
         for s in (1, 2)]
    assert not torch.equal(a[0], a[1]) and not (torch.equal(a[0], greedy) and torch.equal(a[1], greedy))


def test_batch_with_left_padding_and_eos_padding(pair):
    """Two prompts of different lengths, left padded: each row gives what it gives alone, and rows that stop
    at eos are padded with pad_token_id (transformers' layout)."""
    hf, ours = pair
    a, b = [11, 23, 5, 42, 17, 3], [30, 31, 32]
    ids = torch.tensor([a, [EOS] * 3 + b])
    mask = torch.tensor([[1] * 6, [0] * 3 + [1] * 3])
    kw = dict(max_new_tokens=12, pad_token_id=0, eos_token_id=22)  # row b reaches 22 early, row a does not
    out = ours.generate(ids, attention_mask=mask, **kw)
    alone = [ours.generate(torch.tensor([p]), **kw)[0] for p in (a, b)]
    assert out[1, -1] == 0 and 22 in out[1].tolist() and 22 not in out[0].tolist()  # b: eos, then padding
    assert out.shape[0] == 2
    assert out[0, :len(alone[0])].tolist() == alone[0].tolist()
    assert out[1, 3:3 + len(alone[1])].tolist() == alone[1].tolist()
    ref = hf.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(out, ref)


def test_errors_are_clear(pair):
    _, ours = pair
    with pytest.raises(ValueError, match="num_return_sequences"):
        ours.generate(PROMPT, num_return_sequences=2)
    with pytest.raises(ValueError, match="max_length"):
        ours.generate(PROMPT, max_length=4)
    with pytest.raises(TypeError, match="unsupported keyword"):
        ours.generate(PROMPT, typical_pp=0.5)


def test_resolve_sampling_rule():
    from zerollm.engine.hf_generate import resolve_sampling

    assert resolve_sampling(None, None).temperature == 0  # greedy by default, as transformers
    assert resolve_sampling(False, 0.8).temperature == 0  # do_sample=False wins
    s = resolve_sampling(True, None)
    assert (s.temperature, s.top_k, s.top_p) == (1.0, 50, 1.0)
    assert resolve_sampling(None, 0.8).top_k == 50 and resolve_sampling(True, 0.8, top_k=0).top_k == 0
