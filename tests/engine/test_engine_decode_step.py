"""The native decode step (engine/decode_plan.py + kernels/decode_step.cpp, run by engine/native.forward)
computes what the Python blocks (the plain `Transformer.forward`) compute, for every architecture switch,
every weight format, left-padded batches, short prompts (several new tokens per row), the Engine, beam search
and speculative decoding; and it steps aside whenever it cannot apply (long prompts, gradients, training, a
swapped-in module)."""
from __future__ import annotations

import copy

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig, generate
from zerollm.engine import native
from zerollm.engine.decode_plan import DecodePlan
from zerollm.model.kv_cache import KVCache
from zerollm.model.quant import quantize_model
from zerollm.model.transformer import Transformer
from zerollm.engine.native import optimize_for_decode

ARCHS = {  # each switch of ModelConfig that changes a block
    "gpt2": dict(norm="layernorm", mlp="gelu", position="learned", bias=True),
    "llama-gqa": dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, n_kv_head=2),
    "qwen3": dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, qkv_bias=True, n_kv_head=2,
                  qk_norm=True, head_dim=32),  # head_dim * n_head != d_model
    "neox": dict(norm="layernorm", mlp="gelu_exact", position="rope", rotary_pct=0.25, parallel_residual=True,
                 bias=True),
}


def _model(arch: str) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=96, n_layer=2, n_head=4, d_model=64, max_seq_len=48, tie_embeddings=False,
                      **ARCHS[arch])
    m = Transformer(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a mix-up of any two tensors shows
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


def run(m, idx, cache, positions=None):
    """What the decoders run: engine/native.forward (the plan when it applies) and the output projection."""
    return native.logits(m, native.forward(m, idx, cache, positions))


class _Counter:
    def __init__(self, monkeypatch):
        self.calls = 0
        run = DecodePlan.run

        def counting(plan, *a, **kw):
            self.calls += 1
            return run(plan, *a, **kw)

        monkeypatch.setattr(DecodePlan, "run", counting)


def _decode(m: Transformer, steps: int = 4) -> torch.Tensor:
    """Left-padded batch of 3 (pads 0, 2, 5): prefill 9 tokens, then `steps` single-token steps, then 3 tokens at
    once (as speculative verification does); logits (3, 9 + steps + 3, V)."""
    torch.manual_seed(1)
    pad = torch.tensor([0, 2, 5])
    idx = torch.randint(0, m.cfg.vocab_size, (3, 9))
    pos = (torch.arange(9)[None] - pad[:, None]).clamp_min(0)
    cache = KVCache.for_model(m, 3, 32)
    cache.set_left_padding(pad)
    with torch.no_grad():
        out = [run(m, idx, cache, pos)]
        for t in range(steps):
            out.append(run(m, torch.randint(0, m.cfg.vocab_size, (3, 1)), cache, pos[:, -1:] + t + 1))
        out.append(run(m, torch.randint(0, m.cfg.vocab_size, (3, 3)), cache,
                     positions=pos[:, -1:] + steps + torch.arange(1, 4)))
    return torch.cat(out, 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_step_equals_the_python_blocks(arch, native, monkeypatch):
    ref = _model(arch)
    fast = optimize_for_decode(copy.deepcopy(ref))
    assert fast._decode_plan is not None
    count = _Counter(monkeypatch)
    y_fast = _decode(fast)
    assert count.calls == 6  # the 27-token prompt, 4 single-token steps and the 3-token step all went native
    y_ref = _decode(ref)
    assert count.calls == 6
    assert (y_fast - y_ref).abs().max() < 1e-4 * y_ref.abs().max()


@pytest.mark.parametrize("scheme", ["int8", "int4-sym", "int4-asym", "nf4"])
@pytest.mark.parametrize("arch", ["gpt2", "qwen3"])
def test_quantized_step_equals_the_python_blocks(arch, scheme, native, monkeypatch):
    # the Python path runs the same GEMV kernels layer by layer (QuantLinear "native")
    ref = quantize_model(_model(arch), scheme, 32, kernel="native")
    fast = optimize_for_decode(copy.deepcopy(ref))
    count = _Counter(monkeypatch)
    y_fast = _decode(fast)
    assert count.calls == 6
    y_ref = _decode(ref)
    # activations are rounded to int8 per block inside the kernel, so a 1e-7 difference upstream can move one
    # rounding step: equal to a small fraction of the scale, not bit for bit
    assert (y_fast - y_ref).abs().max() < 2e-3 * y_ref.abs().max()
    assert torch.equal(y_fast.argmax(-1), y_ref.argmax(-1))


def test_engine_batches_and_beam_search_agree(native, monkeypatch):
    ref = _model("llama-gqa")
    fast = optimize_for_decode(copy.deepcopy(ref))
    count = _Counter(monkeypatch)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
    cfg = GenerationConfig(max_new_tokens=6, temperature=0, stop_token_ids=[])
    outs = [[c[0].token_ids for c in Engine(m, max_batch_size=3, max_len=32).generate(prompts, cfg)]
            for m in (fast, ref)]
    assert count.calls > 0 and outs[0] == outs[1]
    beam = GenerationConfig(max_new_tokens=5, num_beams=3, stop_token_ids=[])
    calls = count.calls
    assert generate(fast, None, [3, 1, 4, 1, 5], beam) == generate(ref, None, [3, 1, 4, 1, 5], beam)
    assert count.calls > calls


def test_speculative_decoding_agrees(native, monkeypatch):
    from zerollm.engine.speculative import speculative_generate

    target, draft = _model("llama-gqa"), _model("gpt2")
    fast_t, fast_d = optimize_for_decode(copy.deepcopy(target)), optimize_for_decode(copy.deepcopy(draft))
    count = _Counter(monkeypatch)
    cfg = GenerationConfig(max_new_tokens=12, temperature=0, stop_token_ids=[])
    ids = speculative_generate(fast_t, fast_d, [5, 6, 7], cfg, num_draft=3)
    assert count.calls > 0
    assert ids == speculative_generate(target, draft, [5, 6, 7], cfg, num_draft=3) \
        == generate(target, None, [5, 6, 7], cfg)


def test_plan_steps_aside_when_it_cannot_apply(native, monkeypatch):
    m = optimize_for_decode(_model("gpt2"))
    count = _Counter(monkeypatch)
    cache = KVCache.for_model(m, 1, 48)
    run(m, torch.tensor([[1, 2]]), cache)  # a prompt with grad enabled: Python blocks
    assert count.calls == 0
    with torch.no_grad():
        run(m, torch.randint(0, 96, (1, 40)), cache)  # 40 rows (batch x tokens) <= 64: native
        run(m, torch.randint(0, 96, (2, 33)), KVCache.for_model(m, 2, 48))  # 66 rows: Python blocks
        assert count.calls == 1
        cache.reset()
        run(m, torch.tensor([[1, 2]]), cache)
        count.calls = 0
        m.train()
        run(m, torch.tensor([[3]]), cache)  # training mode
        m.eval()
        assert count.calls == 0
        run(m, torch.tensor([[4]]), cache)
        assert count.calls == 1
        m(torch.tensor([[7]]), cache=cache)  # the model's own forward is the plain definition: never the plan
        assert count.calls == 1
        # a module swapped in after the plan was built (as LoRA does): the plan no longer describes the model
        ref = copy.deepcopy(m)
        m.blocks[1].attn.v_proj = torch.nn.Linear(64, 64)
        ref.blocks[1].attn.v_proj = copy.deepcopy(m.blocks[1].attn.v_proj)
        c1, c2 = KVCache.for_model(m, 1, 16), KVCache.for_model(ref, 1, 16)
        run(m, torch.tensor([[1, 2]]), c1), run(ref, torch.tensor([[1, 2]]), c2)
        ref._decode_plan = None
        assert torch.allclose(run(m, torch.tensor([[5]]), c1), run(ref, torch.tensor([[5]]), c2), atol=1e-6)
        assert count.calls == 1
        optimize_for_decode(m)  # rebuilding the plan picks the new module up
        run(m, torch.tensor([[6]]), c1)
        assert count.calls == 2
    assert optimize_for_decode(m, False)._decode_plan is None
