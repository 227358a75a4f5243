"""Engine: batched and continuous-batching output equals the reference loop's (engine/reference.py) for each
request alone; seeds, streaming, stop strings, cancellation, logprobs; sampling filters against their
definitions; HF parity of processors."""
from __future__ import annotations

import functools
import threading

import pytest
import torch

from zerollm.engine.engine import Engine, Request
from zerollm.engine.generate import GenerationConfig, generate, stream
from zerollm.engine.reference import reference_generate
from zerollm.engine.sampling import (apply_presence_frequency, banned_ngram_tokens, min_p_filter, process_logits,
                                     sample_next)
from zerollm.engine.native import optimize_for_decode


@pytest.fixture
def tiny(tiny_model):
    """tiny(seed=0, **overrides): conftest's tiny model (257 byte ids) with larger random weights."""
    return functools.partial(tiny_model, init_std=0.3)


def ref(m, prompt, cfg, tok=None) -> list[int]:
    """The token ids of the plain reference loop."""
    return reference_generate(m, prompt, cfg, tok)[0]


PROMPTS = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [4], [9, 9, 9, 9], [3, 1, 4, 1, 5, 9, 2, 6, 5], [2, 7]]
GREEDY = GenerationConfig(max_new_tokens=12, temperature=0, stop_token_ids=[])


@pytest.mark.parametrize("kw", [dict(), dict(norm="layernorm", mlp="gelu", position="learned", bias=True)])
def test_batched_equals_single(kw, tiny):
    m = tiny(**kw)
    eng = Engine(m, max_batch_size=4)  # 6 prompts, 4 rows: two requests wait and join later
    sampled = GenerationConfig(max_new_tokens=12, temperature=0.9, top_k=40, top_p=0.9, min_p=0.02, seed=5,
                               repetition_penalty=1.2, presence_penalty=0.3, frequency_penalty=0.2,
                               no_repeat_ngram_size=3, stop_token_ids=[])
    for cfg in (GREEDY, sampled):
        outs = eng.generate(PROMPTS, cfg)
        for p, o in zip(PROMPTS, outs):
            assert o[0].token_ids == ref(m, p, cfg)
            assert o[0].finish_reason == "length"


def test_unpadded_batch_runs_without_mask_and_matches_single(tiny):
    m = tiny()
    eng = Engine(m, max_batch_size=4)
    same_len = [[1, 2, 3, 4], [9, 8, 7, 6], [5, 5, 5, 5]]  # no row is left padded: the decode step skips the mask
    eng.submit(Request(same_len[0], GREEDY))
    eng.step()
    assert eng._view(1).valid is None
    outs = eng.generate(same_len, GREEDY)
    for p, o in zip(same_len, outs):
        assert o[0].token_ids == ref(m, p, GREEDY)


def test_continuous_batching_joins_and_rebases(tiny):
    m = tiny()
    eng = Engine(m, max_batch_size=3, max_len=40)  # small cache: forces shifts of the shared fill level
    cfgs = [GenerationConfig(max_new_tokens=n, temperature=0, stop_token_ids=[]) for n in (20, 5, 14, 9, 25, 3)]
    handles = []
    for i, (p, c) in enumerate(zip(PROMPTS, cfgs)):
        handles.append(eng.submit(Request(p, c)))
        for _ in range(i + 1):  # requests arrive while others are mid-decode
            eng.step()
    eng.run_until_done()
    for p, c, h in zip(PROMPTS, cfgs, handles):
        assert h.result().token_ids == ref(m, p, c)


def test_cache_storage_grows_on_demand(tiny):
    m = tiny(max_seq_len=1024)
    eng = Engine(m, max_batch_size=16)  # full size would be 16 rows x 1024 slots
    assert tuple(eng.cache.k[0].shape[::2]) == (1, 128)
    cfg = GenerationConfig(max_new_tokens=150, temperature=0, stop_token_ids=[])
    outs = eng.generate(PROMPTS[:3], cfg)  # 3 rows, at most 9 + 150 slots
    rows, slots = eng.cache.k[0].shape[0], eng.cache.k[0].shape[2]
    assert 3 <= rows <= 4 and 160 <= slots <= 320
    for p, o in zip(PROMPTS[:3], outs):  # growing mid-generation kept every row's keys and values
        assert o[0].token_ids == ref(m, p, cfg)


def test_seeds_and_num_return_sequences(tiny):
    m = tiny()
    eng = Engine(m, max_batch_size=4)
    cfg = GenerationConfig(max_new_tokens=10, temperature=1.0, seed=7, num_return_sequences=3, stop_token_ids=[])
    a = [c.token_ids for c in eng.generate([PROMPTS[0]], cfg)[0]]
    b = [c.token_ids for c in eng.generate([PROMPTS[0]], cfg)[0]]
    assert a == b and len({tuple(x) for x in a}) == 3  # reproducible, and the sequences differ
    one = GenerationConfig(max_new_tokens=10, temperature=1.0, seed=8, stop_token_ids=[])
    assert a[1] == ref(m, PROMPTS[0], one)  # sequence i uses seed + i


def test_stop_strings_and_streaming_match_the_reference(tiny, byte_tokenizer):
    m = tiny(3)
    tok = byte_tokenizer
    base = ref(m, [65, 66], GenerationConfig(max_new_tokens=30, temperature=0), tok)
    text = tok.decode(base)
    stop = text[5:8]  # spans several tokens
    cfg = GenerationConfig(max_new_tokens=30, temperature=0, stop_strings=[stop])
    ref_ids, ref_reason = reference_generate(m, [65, 66], cfg, tok)
    ref_text = tok.decode(ref_ids)[:tok.decode(ref_ids).find(stop)]
    eng = Engine(m, tok)
    h = eng.submit([65, 66], cfg)
    pieces = list(h.texts())
    res = h.result()
    assert "".join(pieces) == res.text == ref_text and stop not in res.text
    assert res.finish_reason == ref_reason == "stop" and res.token_ids == ref_ids
    s = stream(m, tok, [65, 66], cfg)  # stream() is the same engine request
    assert list(s) == pieces and s.token_ids == ref_ids and s.finish_reason == "stop"
    assert generate(m, tok, [65, 66], cfg) == ref_ids


def test_generate_and_stream_equal_the_reference_loop(tiny, byte_tokenizer):
    """generate() / stream() (a one-request Engine, with the native decode step when attached) against the
    plain loop: greedy, seeded sampling with every processor, a stop string, and a prompt that fills the window."""
    tok = byte_tokenizer
    for m in (tiny(), optimize_for_decode(tiny(1, norm="layernorm", mlp="gelu", position="learned", bias=True))):
        sampled = GenerationConfig(max_new_tokens=20, temperature=0.9, top_k=40, top_p=0.9, min_p=0.02, seed=3,
                                   repetition_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.2,
                                   no_repeat_ngram_size=2)
        for cfg in (GREEDY, sampled, GenerationConfig(max_new_tokens=40, temperature=0.7, seed=1,
                                                      stop_strings=["a", "e"])):
            for p in PROMPTS[:3]:
                ids, reason = reference_generate(m, p, cfg, tok)
                s = stream(m, tok, p, cfg)
                text = s.read()
                assert s.token_ids == ids and s.finish_reason == reason and generate(m, tok, p, cfg) == ids
                assert text == tok.decode(ids) or reason == "stop" and tok.decode(ids).startswith(text)
        full = list(range(1, 65))  # 64 tokens fill the window: the last position still predicts one token
        assert generate(m, None, full, GREEDY) == ref(m, full, GREEDY) and len(ref(m, full, GREEDY)) == 1


def test_cancellation_in_background_thread(tiny):
    m = tiny()
    eng = Engine(m, max_batch_size=2).start()
    try:
        long = eng.submit(PROMPTS[0], GenerationConfig(max_new_tokens=50, temperature=0, stop_token_ids=[]))
        short = eng.submit(PROMPTS[1], GREEDY)
        seen = 0
        for ev in long:
            seen += 1
            if seen == 3:
                long.cancel()
        assert long.result().finish_reason == "cancelled" and 3 <= len(long.result().token_ids) < 50
        assert short.result().token_ids == ref(m, PROMPTS[1], GREEDY)
    finally:
        eng.stop()
    assert not eng.running and threading.active_count() >= 1


def test_logprobs_match_log_softmax(tiny):
    m = tiny()
    cfg = GenerationConfig(max_new_tokens=6, temperature=0.8, seed=1, logprobs=3, stop_token_ids=[])
    res = Engine(m).generate([PROMPTS[1]], cfg)[0][0]
    seq = torch.tensor([PROMPTS[1] + res.token_ids])
    with torch.no_grad():
        logp = m(seq)[0].log_softmax(-1)
    P = len(PROMPTS[1])
    for i, t in enumerate(res.token_ids):
        assert abs(res.logprobs[i] - float(logp[P - 1 + i, t])) < 1e-4
        top = logp[P - 1 + i].topk(3)
        assert [x[0] for x in res.top_logprobs[i]] == top.indices.tolist()


# --- sampling filters against their definitions --------------------------------------------------------
def _empirical(logits, cfg, n=20000, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = process_logits(logits[None], cfg).softmax(-1)[0]
    draws = torch.multinomial(probs.expand(n // 100, -1), 100, replacement=True, generator=g).flatten()
    return torch.bincount(draws, minlength=logits.numel()).float() / draws.numel()


@pytest.mark.parametrize("cfg,keep", [
    (GenerationConfig(temperature=1.0, min_p=0.2), lambda p: p >= 0.2 * p.max()),
    (GenerationConfig(temperature=1.0, top_k=3), lambda p: p >= p.sort(descending=True).values[2]),
    (GenerationConfig(temperature=1.0, top_p=0.7), lambda p: (p.sort(descending=True).values.cumsum(0) - p.sort(
        descending=True).values)[p.argsort(descending=True).argsort()] < 0.7),
])
def test_filters_sample_their_definition(cfg, keep):
    logits = torch.tensor([2.0, 1.5, 1.0, 0.3, 0.0, -1.0, -2.0, 0.9])
    p = logits.softmax(-1)
    kept = keep(p)
    target = torch.where(kept, p, torch.zeros_like(p))
    target /= target.sum()
    freq = _empirical(logits, cfg)
    assert torch.all(freq[~kept] == 0)
    assert torch.allclose(freq, target, atol=0.015)  # ~4 sigma at n=20000


def test_min_p_and_penalty_definitions():
    logits = torch.tensor([[0.0, -1.0, -3.0]])
    kept = torch.isfinite(min_p_filter(logits, 0.3))
    assert kept.tolist() == [[True, True, False]]  # e^-1 = 0.37 >= 0.3, e^-3 = 0.05 < 0.3
    out = apply_presence_frequency(torch.zeros(1, 4), torch.tensor([[1, 1, 3]]), 0.5, 0.25)
    assert out.tolist() == [[0.0, -1.0, 0.0, -0.75]]
    assert sorted(banned_ngram_tokens([1, 2, 3, 1, 2], 3)) == [3]
    assert banned_ngram_tokens([1, 2], 3) == []
    # logit bias: +100 forces a token, under greedy
    assert int(sample_next(torch.zeros(1, 5), None, GenerationConfig(temperature=0, logit_bias={3: 100.0}))) == 3


def test_greedy_processors_match_transformers(tiny):
    pytest.importorskip("transformers")
    from zerollm.interop.hf import to_hf_model

    m = tiny(1, norm="layernorm", mlp="gelu", position="learned", bias=True, n_kv_head=4, vocab_size=97)
    hf = to_hf_model(m)
    prompt = [5, 17, 60, 3, 5, 17]
    for kw in (dict(no_repeat_ngram_size=2), dict(no_repeat_ngram_size=3, repetition_penalty=1.3)):
        cfg = GenerationConfig(max_new_tokens=20, temperature=0, stop_token_ids=[], **kw)
        ours = Engine(m).generate([prompt], cfg)[0][0].token_ids
        hf_ids = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=0,
                          eos_token_id=None, attention_mask=torch.ones(1, len(prompt), dtype=torch.long), **kw)
        assert ours == hf_ids[0, len(prompt):].tolist() == ref(m, prompt, cfg), kw


def test_engine_constrained_request(tiny, byte_tokenizer):
    from zerollm.engine.constrained import RegexConstraint
    import re

    m, tok = tiny(), byte_tokenizer
    c = RegexConstraint(r"[a-c]{2,4}-\d{2}", tok)
    eng = Engine(m, tok, max_batch_size=3)
    hs = [eng.submit(Request([65 + i], GenerationConfig(max_new_tokens=10, temperature=1.0, seed=i),
                             constraint=c)) for i in range(4)]
    eng.run_until_done()
    for h in hs:
        assert re.fullmatch(r"[a-c]{2,4}-\d{2}", h.result().text), h.result().text


def test_server_pieces_stop_id_top_logprobs_special_text_and_max_waiting(tiny, byte_tokenizer, monkeypatch):
    from zerollm.engine.engine import Overloaded

    m, tok = tiny(), byte_tokenizer
    monkeypatch.setattr(tok, "token_bytes", lambda i: b"<eos>" if i == 256 else bytes([i]))  # visible special
    greedy = ref(m, [1, 2, 3], GenerationConfig(max_new_tokens=8, temperature=0, stop_token_ids=[]))
    stop = greedy[3]  # make the 4th greedy token a stop id
    eng = Engine(m, tok, max_batch_size=2, max_waiting=1, skip_special_tokens=True)
    h = eng.submit(Request([1, 2, 3], GenerationConfig(max_new_tokens=8, temperature=0, stop_token_ids=[stop],
                                                       logprobs=2)))
    with pytest.raises(Overloaded):  # one request already waits
        eng.submit(Request([4], GREEDY))
    events = list(h)
    c = h.result()
    assert c.finish_reason == "stop" and c.stop_token_id == stop and c.token_ids == greedy[:3]
    toks = [e for e in events if e.token_id is not None]
    assert [e.top_logprobs for e in toks] == c.top_logprobs and all(len(t) == 2 for t in c.top_logprobs)
    assert toks[0].top_logprobs[0][0] == greedy[0]  # greedy picks the most likely token
    # a length finish has no stop id; a special token is counted but adds no text
    bias = GenerationConfig(max_new_tokens=3, temperature=0, stop_token_ids=[], logit_bias={256: 100.0})
    c2 = eng.generate([[5]], bias)[0][0]
    assert c2.finish_reason == "length" and c2.stop_token_id is None
    assert c2.token_ids == [256] * 3 and c2.text == ""
    c3 = Engine(m, tok).generate([[5]], bias)[0][0]  # default: its bytes are text
    assert c3.text == "<eos>" * 3


def test_constraint_budget_is_the_rows_own_room_not_the_shared_fill_level(tiny, byte_tokenizer):
    from zerollm.engine.constrained import RegexConstraint

    m, tok = tiny(), byte_tokenizer
    c = RegexConstraint(r"[ab]{1,30}", tok)
    budgets = []

    class Spy:  # records the token budget the engine gives the constraint
        eos_id = c.eos_id

        def begin(self):
            st = c.begin()
            mask = st.mask
            st.mask = lambda remaining=None, n=None: (budgets.append(remaining), mask(remaining, n))[1]
            return st

    eng = Engine(m, tok, max_batch_size=2)  # max_len 64
    eng.submit(Request(list(range(1, 41)), GenerationConfig(max_new_tokens=20, temperature=0, stop_token_ids=[])))
    for _ in range(10):
        eng.step()
    assert eng.cache.pos == 50  # the long row fills the shared slots up to 50
    h = eng.submit(Request([97], GenerationConfig(max_new_tokens=20, temperature=0), constraint=Spy()))
    eng.run_until_done()
    assert budgets[0] == 20  # its own room is 63 tokens; the shared fill level would have left 14
    assert h.result().finish_reason in ("stop", "length")
