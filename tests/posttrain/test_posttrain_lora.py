"""LoRA: merge/unmerge, PEFT-format adapters both ways (against the real `peft`), rsLoRA, NF4/QLoRA."""
from __future__ import annotations

import json

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.model.quant import dequantize_weight, quantize_weight
from zerollm.model.transformer import Transformer
from zerollm.posttrain.lora import (LoRAConfig, apply_lora, load_adapter, lora_modules, merge_lora, save_adapter,
                                    strip_lora, trainable_share, unmerge_lora)

LLAMA = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2, max_seq_len=32, position="rope",
             norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False)
GPT2 = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, max_seq_len=32)
NEOX = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, max_seq_len=32, position="rope", rotary_pct=0.25,
            norm="layernorm", mlp="gelu_exact", bias=True, parallel_residual=True, tie_embeddings=False)
ARCH = {"llama": LLAMA, "gpt2": GPT2, "gpt_neox": NEOX}


def _model(kw, seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**kw)).eval()


def _hf(model, tmp_path):
    """The transformers model with our weights. NeoX goes through an exported directory: transformers 5 names
    its head `lm_head` in memory but `embed_out` in files (renamed on load), which in-memory
    interop.hf.to_hf_model does not follow."""
    import transformers

    from zerollm.interop.hf import export_hf, to_hf_model

    if model.cfg.parallel_residual:
        export_hf(model, None, tmp_path / "hf_base")
        return transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf_base"), dtype=torch.float32).eval()
    return to_hf_model(model)


def _randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


def test_zero_init_merge_unmerge_and_freeze():
    model = _model(LLAMA)
    x = torch.randint(0, 64, (2, 10))
    base = model(x)
    names = apply_lora(model, LoRAConfig(r=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"]))
    assert len(names) == 6 and all(n.endswith(("q_proj", "v_proj", "down_proj")) for n in names)
    torch.testing.assert_close(model(x), base, atol=0, rtol=0)  # B = 0: the base model exactly
    trainable, total = trainable_share(model)
    assert trainable == sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_modules(model).values()) < total
    _randomize_b(model)
    w0 = {n: m.weight.detach().clone() for n, m in lora_modules(model).items()}
    adapted = model(x)
    assert not torch.allclose(adapted, base)
    merge_lora(model)
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)  # W + (α/r)·B A
    unmerge_lora(model)
    for n, m in lora_modules(model).items():
        torch.testing.assert_close(m.weight, w0[n], atol=1e-7, rtol=0)  # back to the base weight (rounding only)
    torch.testing.assert_close(model(x), adapted, atol=1e-6, rtol=1e-6)
    strip_lora(model)
    assert not lora_modules(model) and type(model.blocks[0].attn.q_proj) is torch.nn.Linear
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)


def test_rslora_scaling_and_regex_targets():
    model = _model(GPT2)
    apply_lora(model, LoRAConfig(r=16, alpha=8, rslora=True, targets=r"blocks\.1\.mlp\..*"))
    mods = lora_modules(model)
    assert sorted(mods) == ["blocks.1.mlp.fc", "blocks.1.mlp.proj"]
    assert all(m.scaling == pytest.approx(8 / 4) for m in mods.values())


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_our_adapter_loads_in_peft_with_matching_outputs(arch, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(ARCH[arch])
    hf = _hf(model, tmp_path)
    apply_lora(model, LoRAConfig(r=4, alpha=8))  # all attention and MLP projections
    _randomize_b(model)
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path="tiny")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4
    peft_model = peft.PeftModel.from_pretrained(hf, str(tmp_path / "adapter")).eval()
    x = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(x).logits, model(x), atol=1e-5, rtol=1e-4)
    # and back: our own files load into a fresh copy of ours
    fresh = _model(ARCH[arch])
    load_adapter(fresh, tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_peft_adapter_loads_into_ours(arch, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(ARCH[arch])
    hf = _hf(model, tmp_path)
    targets = {"llama": ["q_proj", "v_proj", "gate_proj", "down_proj"], "gpt2": ["c_attn", "c_fc"],
               "gpt_neox": ["query_key_value", "dense_4h_to_h"]}[arch]
    kwargs = {"llama": {"rank_pattern": {"v_proj": 2}, "alpha_pattern": {"v_proj": 6}},
              "gpt2": {"fan_in_fan_out": True}, "gpt_neox": {}}[arch]
    lcfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, use_rslora=arch == "gpt2",
                           **kwargs)
    pm = peft.get_peft_model(hf, lcfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    pm.save_pretrained(str(tmp_path / "peft"))
    names = load_adapter(model, tmp_path / "peft")
    assert len(names) == 8  # gpt2/neox: the fused qkv → q, k, v (+ c_fc / dense_4h_to_h) per layer
    x = torch.randint(0, 64, (2, 12))
    pm.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), pm(x).logits, atol=1e-5, rtol=1e-4)


def test_nf4_quantization_and_qlora():
    from zerollm.posttrain.qlora import NF4Linear, nf4_bytes, quantize_nf4

    torch.manual_seed(0)
    w = torch.randn(64, 128) * 0.02
    lin = NF4Linear(torch.nn.Linear(128, 64, bias=False))
    with torch.no_grad():
        lin.load_weight(w)
    back = lin.dequantized_weight()
    # 4-bit: error ≤ half the widest NF4 level gap (0.30 / 2) of the block absmax, plus double-quant rounding
    absmax = w.reshape(-1, 64).abs().amax(1, keepdim=True)
    assert ((back - w).reshape(-1, 64).abs() <= 0.16 * absmax + 1e-4).all()
    assert lin.packed.numel() == w.numel() // 2 and lin.packed.dtype == torch.uint8
    # the layer holds exactly what the one NF4 codec (model/quant.py, `zerollm quantize --scheme nf4`) stores
    q = quantize_weight(w, "nf4")
    assert torch.equal(lin.packed, q["qweight"].flatten()) and torch.equal(lin.scales_q8, q["absmax_q8"])
    torch.testing.assert_close(back, dequantize_weight(q, "nf4", tuple(w.shape)), rtol=0, atol=0)
    model = _model(LLAMA)
    x = torch.randint(0, 64, (2, 10))
    ref = model(x)
    quantize_nf4(model)
    assert isinstance(model.blocks[0].attn.q_proj, NF4Linear)
    assert nf4_bytes(model) < 0.2 * sum(4 * p.numel() for n, p in _model(LLAMA).named_parameters() if "blocks" in n
                                        and p.dim() == 2)
    out = model(x)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    apply_lora(model, LoRAConfig(r=4, alpha=8))
    trainable, _ = trainable_share(model)
    assert trainable > 0
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    mods = lora_modules(model)
    assert all(m.lora_A.grad is not None for m in mods.values())
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def test_neox_fused_qkv_needs_all_three_and_names_the_module(tmp_path):
    model = _model(NEOX)
    apply_lora(model, LoRAConfig(r=2, alpha=4, targets=["q_proj", "o_proj"]))
    with pytest.raises(ValueError, match=r"gpt_neox\.layers\.0\.attention\.query_key_value: .*q_proj, k_proj, v_proj"):
        save_adapter(model, tmp_path / "a")


def test_nf4_streaming_load_matches_quantize_and_backward_needs_no_fp32_weight(tmp_path):
    from zerollm.posttrain.qlora import NF4Linear, load_nf4_model, quantize_nf4
    from zerollm.train.checkpoint import save_checkpoint

    model = _model(LLAMA)
    save_checkpoint(tmp_path / "ck", model, model.cfg)
    streamed = load_nf4_model(tmp_path / "ck").model
    quantize_nf4(model)
    a, b = dict(model.named_buffers()), dict(streamed.named_buffers())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for (n, p), (_, q) in zip(model.named_parameters(), streamed.named_parameters()):
        assert torch.equal(p, q), n
    assert not any(p.requires_grad for p in streamed.parameters())
    # ∂L/∂x through NF4Linear (weight re-dequantized in backward) = through the dequantized fp32 weight
    lin = streamed.blocks[0].mlp.up_proj
    assert isinstance(lin, NF4Linear)
    x = torch.randn(3, lin.in_features, requires_grad=True)
    (lin(x) ** 2).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (torch.nn.functional.linear(x2, lin.dequantized_weight()) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_release_freed_memory_is_safe_to_call():
    from zerollm.runtime import release_freed_memory

    assert release_freed_memory(0) is False  # 0 = keep the allocator's default
    assert release_freed_memory(1 << 20, d_model=128) is False  # narrow models keep glibc's default
    first = release_freed_memory(1 << 20)
    assert release_freed_memory(1 << 20) == first  # idempotent; False off glibc
