"""Sampling processors and the generation loop: filters, HF parity, reproducibility, stop handling."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from zerollm.config import ModelConfig
from zerollm.engine import (GenerationConfig, apply_repetition_penalty, generate, sample_next, stream,
                            top_k_filter, top_p_filter)


EXTRA = [b"wor", b"ld!\nE", b"ND", b"\xc3", b"\xa9t\xc3\xa9"]  # multi-byte tokens, incl. split UTF-8


class StubTokenizer:
    """Byte-level: id < 256 is that byte; 256 + j is EXTRA[j]."""

    vocab_size = 256 + len(EXTRA)

    def token_bytes(self, i: int) -> bytes:
        return bytes([i]) if i < 256 else EXTRA[i - 256]

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        return list(text.encode())


class ScriptedLM(nn.Module):
    """A stand-in model that, at cache position p, puts all its mass on script[p - prompt_len]."""

    def __init__(self, script: list[int], vocab: int = 256 + len(EXTRA), max_seq_len: int = 64):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=vocab, n_layer=1, n_head=1, d_model=4, max_seq_len=max_seq_len)
        self.script, self.dummy = script, nn.Parameter(torch.zeros(1))
        self.prompt_len = None

    def forward(self, idx, cache=None, positions=None, return_hidden=False):
        B, T = idx.shape
        if self.prompt_len is None:
            self.prompt_len = T
        out = torch.full((B, T, self.cfg.vocab_size), -10.0)
        for t in range(T):
            step = cache.pos + t + 1 - self.prompt_len  # index of the token this position predicts
            if 0 <= step < len(self.script):
                out[:, t, self.script[step]] = 10.0
        cache.advance(T)
        return out

    def logits(self, hidden):
        return hidden


def ids_of(*parts) -> list[int]:
    out = []
    for p in parts:
        out += list(p.encode()) if isinstance(p, str) else [p]
    return out


# ----------------------------------------------------------------------------------------------------------
# logits processors


def test_top_k_keeps_exactly_k():
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    logits[0, :10] = 5.0  # ties: still exactly k
    for k in (1, 5, 37):
        out = top_k_filter(logits, k)
        assert (out.isfinite().sum(-1) == k).all()
        kept_min = out.masked_fill(~out.isfinite(), float("inf")).min(-1).values
        dropped_max = logits.masked_fill(out.isfinite(), float("-inf")).max(-1).values
        assert (kept_min >= dropped_max).all()
    assert torch.equal(top_k_filter(logits, 0), logits)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_top_p_keeps_the_minimal_nucleus(p):
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(1)) * 3
    out = top_p_filter(logits, p)
    probs = logits.softmax(-1)
    for b in range(8):
        kept = out[b].isfinite()
        mass = probs[b][kept].sum().item()
        assert mass >= p - 1e-6  # enough mass ...
        assert mass - probs[b][kept].min().item() < p  # ... and dropping the least likely kept token breaks it
        assert probs[b][kept].min() >= probs[b][~kept].max() if (~kept).any() else True
    hf = TopPLogitsWarper(top_p=p)(None, logits.clone())
    assert torch.equal(hf.isfinite(), out.isfinite())


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 40, generator=g)
    prev = torch.randint(0, 40, (3, 25), generator=g)  # with repeats
    for penalty in (1.3, 0.7):
        ours = apply_repetition_penalty(logits, prev, penalty)
        theirs = RepetitionPenaltyLogitsProcessor(penalty)(prev, logits.clone())
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert torch.equal(apply_repetition_penalty(logits, prev, 1.0), logits)


def test_sample_next_greedy_and_seeded():
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_next(logits, None, GenerationConfig(temperature=0)), logits.argmax(-1))
    cfg = GenerationConfig(temperature=0.8, top_k=10, top_p=0.9)
    draws = [sample_next(logits, torch.Generator().manual_seed(7), cfg) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    g = torch.Generator().manual_seed(0)
    many = torch.stack([sample_next(logits, g, GenerationConfig(temperature=1.0, top_k=3)) for _ in range(200)])
    top3 = logits.topk(3, -1).indices
    for b in range(2):  # only top-k tokens are ever drawn, and more than one of them
        assert set(many[:, b].tolist()) <= set(top3[b].tolist()) and len(set(many[:, b].tolist())) > 1


# ----------------------------------------------------------------------------------------------------------
# generation loop


@pytest.fixture
def llama(tiny_model):
    """llama(seed=0, **overrides): conftest's tiny model as a Llama (RMSNorm, SwiGLU, RoPE, no biases) over the
    stub tokenizer's ids, 48 positions."""
    return functools.partial(tiny_model, vocab_size=256 + len(EXTRA), max_seq_len=48, norm="rmsnorm", mlp="swiglu",
                             position="rope", bias=False, init_std=0.1)


def naive_generate(model, prompt, n, cfg, generator=None):
    """Reference loop: full recompute of the whole sequence for every token, no cache."""
    seq = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            logits = model(seq)[:, -1]
            nxt = sample_next(logits, generator, cfg, seq)
            seq = torch.cat([seq, nxt.view(1, 1)], 1)
    return seq[0, len(prompt):].tolist()


@pytest.mark.parametrize("kw", [dict(), dict(norm="layernorm", mlp="gelu", position="learned", bias=True)])
def test_generate_equals_naive_loop(kw, llama):
    model = llama(**kw)
    prompt = [5, 17, 99, 3, 200]
    greedy = GenerationConfig(max_new_tokens=20, temperature=0, stop_token_ids=[])
    assert generate(model, None, prompt, greedy) == naive_generate(model, prompt, 20, greedy)
    sampled = GenerationConfig(max_new_tokens=20, temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.2,
                               seed=11, stop_token_ids=[])
    ours = generate(model, None, prompt, sampled)
    assert ours == naive_generate(model, prompt, 20, sampled, torch.Generator().manual_seed(11))
    assert ours == generate(model, None, prompt, sampled)  # seeded -> reproducible
    assert ours != generate(model, None, prompt, GenerationConfig(**{**sampled.__dict__, "seed": 12}))
    assert model.training is False


def test_greedy_generate_matches_transformers_gpt2(llama):
    pytest.importorskip("transformers")
    from zerollm.interop.hf import to_hf_model

    model = llama(norm="layernorm", mlp="gelu", position="learned", bias=True, n_kv_head=4, vocab_size=97)
    hf = to_hf_model(model)
    prompt = [5, 17, 60, 3]
    for penalty in (1.0, 1.5):
        ours = generate(model, None, prompt, GenerationConfig(max_new_tokens=15, temperature=0,
                                                              repetition_penalty=penalty, stop_token_ids=[]))
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=15, do_sample=False, repetition_penalty=penalty,
                          attention_mask=torch.ones(1, 4, dtype=torch.long), pad_token_id=0, eos_token_id=None)
        assert ours == ref[0, 4:].tolist(), penalty


def test_stop_string_spanning_tokens_is_excluded():
    tok = StubTokenizer()
    # "Hello, " + "wor" + "ld!\nE" + "ND" + " more": stop "\nEND" starts inside one token and ends in the next
    script = ids_of("Hello, ", 256, 257, 258, " more")
    s = stream(ScriptedLM(script), tok, [1, 2], GenerationConfig(max_new_tokens=30, temperature=0,
                                                                   stop_strings=["\nEND"]))
    pieces = list(s)
    assert "".join(pieces) == s.text == "Hello, world!"
    assert s.finish_reason == "stop"
    assert all("\n" not in p for p in pieces)  # the held-back prefix of the stop string never leaked
    assert s.token_ids == script[:10]  # up to the token that completed the stop string
    ids = generate(ScriptedLM(script), tok, [1, 2], GenerationConfig(max_new_tokens=30, temperature=0,
                                                                     stop_strings=["\nEND"]))
    assert ids == script[:10] and tok.decode(ids).endswith("\nEND")
    # a partial stop-string match that does not complete is emitted in the end
    s = stream(ScriptedLM(ids_of("ab\nEx")), tok, [1], GenerationConfig(max_new_tokens=5, temperature=0,
                                                                        stop_strings=["\nEND", "zz"]))
    assert s.read() == "ab\nEx" and s.finish_reason == "length"


def test_stop_token_id_and_streamed_utf8():
    tok = StubTokenizer()
    script = ids_of("d", 259, 260, "!", 0, "never")  # "d" + "\xc3" + "\xa9t\xc3\xa9" + "!" = "dété!", then eos 0
    s = stream(ScriptedLM(script), tok, [1], GenerationConfig(max_new_tokens=30, temperature=0, stop_token_ids=[0]))
    pieces = list(s)
    assert "".join(pieces) == "d\u00e9t\u00e9!"
    assert "\ufffd" not in "".join(pieces)  # the split character came out whole
    assert s.finish_reason == "stop" and s.token_ids == script[:4]
    # default stop ids come from the tokenizer's eos_id
    tok.eos_id = ord("!")
    assert generate(ScriptedLM(script), tok, [1], GenerationConfig(max_new_tokens=30, temperature=0)) == script[:3]


def test_length_limits(llama):
    tok = StubTokenizer()
    script = ids_of("abcdefghijklmnop")
    s = stream(ScriptedLM(script), tok, [1], GenerationConfig(max_new_tokens=4, temperature=0))
    assert s.read() == "abcd" and s.finish_reason == "length"
    # context window 10, prompt 8: the model can predict 3 tokens (positions 8, 9 and the one after 9)
    s = stream(ScriptedLM(script, max_seq_len=10), tok, list(range(8)), GenerationConfig(max_new_tokens=50,
                                                                                           temperature=0))
    assert s.read() == "abc" and s.finish_reason == "length"
    model = llama()
    assert len(generate(model, None, list(range(40)), GenerationConfig(max_new_tokens=50, temperature=0,
                                                                       stop_token_ids=[]))) == 48 - 40 + 1
    with pytest.raises(ValueError, match="context window"):
        generate(model, None, list(range(49)), GenerationConfig(max_new_tokens=1))
    with pytest.raises(ValueError, match="at least one"):
        stream(model, tok, [], GenerationConfig())
    assert generate(model, None, [1], GenerationConfig(max_new_tokens=0)) == []


def test_generation_config_validates():
    assert GenerationConfig(stop_strings="\n\n").stop_strings == ["\n\n"]
    for bad in (dict(temperature=-1), dict(top_p=0.0), dict(top_k=-2), dict(repetition_penalty=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GenerationConfig(**bad)


def test_cli_generate_with_a_draft_model_equals_plain_greedy(tmp_path, capsys, tiny_model, tiny_bpe_tokenizer):
    """`zerollm generate --draft` (speculative decoding) prints exactly what plain greedy decoding prints."""
    from zerollm import cli
    from zerollm.train.checkpoint import save_checkpoint

    tok = tiny_bpe_tokenizer
    for name, layers, seed in (("target", 2, 0), ("draft", 1, 1)):
        m = tiny_model(seed, vocab_size=tok.vocab_size, n_layer=layers, n_head=2, d_model=32)
        save_checkpoint(tmp_path / name, m, m.cfg, tokenizer=tok)
    args = ["generate", "--model", str(tmp_path / "target"), "--prompt", "the cat", "--temperature", "0",
            "--max-new-tokens", "20", "--no-stream"]
    assert cli.main(args) in (0, None)
    plain = capsys.readouterr().out
    assert cli.main(args + ["--draft", str(tmp_path / "draft"), "--draft-tokens", "3"]) in (0, None)
    assert capsys.readouterr().out == plain and len(plain) > len("the cat")


def test_generation_config_eos_list_ends_generation(tmp_path, tiny_model, tiny_bpe_tokenizer):
    """A converted chat model ends turns with any id of generation_config.json's eos_token_id list."""
    import json

    from zerollm import api
    from zerollm.train.checkpoint import save_checkpoint

    tok = tiny_bpe_tokenizer
    m = tiny_model(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32)
    ck = save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tok)
    m = api.load(ck).model
    ids = generate(m, tok, tok.encode("the cat"), GenerationConfig(max_new_tokens=12, temperature=0,
                                                                    stop_token_ids=[]))
    full = api.generate(ck, "the cat", max_new_tokens=12, temperature=0)
    k = next((j for j in range(1, len(ids)) if ids[j] not in ids[:j]), 0)  # first position of a new token
    (ck / "generation_config.json").write_text(json.dumps({"eos_token_id": [tok.eos_id, ids[k]]}))
    cut = api.generate(ck, "the cat", max_new_tokens=12, temperature=0)
    assert full == tok.decode(ids) and cut == tok.decode(ids[:k]) and len(cut) < len(full)
