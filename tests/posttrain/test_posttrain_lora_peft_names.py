"""LoRA targets in PEFT's names (issue 19 item 6): each architecture's HF module names and "all-linear" pick
the same layers as `peft.get_peft_model` on the transformers model, with the same trainable-parameter count,
and the adapter trained that way still loads in PEFT with the same outputs."""
from __future__ import annotations

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.posttrain.lora import LoRAConfig, apply_lora, lora_modules, save_adapter, trainable_share

peft = pytest.importorskip("peft")

LLAMA = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2, max_seq_len=32, position="rope",
             norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False)
GPT2 = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, max_seq_len=32)
NEOX = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, max_seq_len=32, position="rope", rotary_pct=0.25,
            norm="layernorm", mlp="gelu_exact", bias=True, parallel_residual=True, tie_embeddings=False)
CASES = [
    ("gpt2", GPT2, ["c_attn"]), ("gpt2", GPT2, ["c_attn", "c_proj"]), ("gpt2", GPT2, ["c_fc"]),
    ("gpt2", GPT2, "all-linear"), ("gpt2", GPT2, r".*\.1\.attn\.c_attn"),
    ("llama", LLAMA, ["q_proj", "v_proj"]), ("llama", LLAMA, ["o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("llama", LLAMA, "all-linear"),
    ("gpt_neox", NEOX, ["query_key_value"]), ("gpt_neox", NEOX, ["dense", "dense_h_to_4h"]),
    ("gpt_neox", NEOX, "all-linear"),
]


def _pair(kw, tmp_path):
    import transformers

    from zerollm.interop.hf import export_hf

    torch.manual_seed(0)
    model = Transformer(ModelConfig(**kw)).eval()
    export_hf(model, None, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    return model, hf


@pytest.mark.parametrize("arch,kw,targets", CASES, ids=[f"{a}-{t}" for a, _, t in CASES])
def test_hf_names_and_all_linear_match_peft_counts_and_load_in_peft(arch, kw, targets, tmp_path):
    model, hf = _pair(kw, tmp_path)
    pm = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0))
    peft_trainable, peft_total = pm.get_nb_trainable_parameters()
    apply_lora(model, LoRAConfig(r=4, alpha=8, targets=targets))
    trainable, total = trainable_share(model)
    assert trainable == peft_trainable
    assert total == peft_total
    # the adapter trained that way is PEFT's adapter: randomize B (and A), save, load in PEFT, same logits
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in {id(p): p for n, p in model.named_parameters() if "lora_" in n}.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    save_adapter(model, tmp_path / "adapter")
    loaded = peft.PeftModel.from_pretrained(hf.__class__.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32),
                                            str(tmp_path / "adapter")).eval()
    assert sum(p.numel() for n, p in loaded.named_parameters() if "lora_" in n) == trainable
    x = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x), atol=1e-5, rtol=1e-4)


def test_fused_target_shares_one_A_and_our_names_still_work():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**GPT2))
    apply_lora(model, LoRAConfig(r=4, targets=["c_attn"]))
    mods = lora_modules(model)
    assert sorted(mods) == [f"blocks.{i}.attn.{p}_proj" for i in range(2) for p in "kqv"]
    attn = model.blocks[0].attn
    assert attn.q_proj.lora_A is attn.k_proj.lora_A is attn.v_proj.lora_A
    # our own names keep their meaning: three independent adapters
    model2 = Transformer(ModelConfig(**GPT2))
    apply_lora(model2, LoRAConfig(r=4, targets=["q_proj", "k_proj", "v_proj"]))
    assert model2.blocks[0].attn.q_proj.lora_A is not model2.blocks[0].attn.k_proj.lora_A
    # from the CLI, lora_config.targets=all-linear arrives as a one-element list
    model3 = Transformer(ModelConfig(**GPT2))
    assert len(apply_lora(model3, LoRAConfig(r=4, targets=["all-linear"]))) == 2 * 6
    with pytest.raises(ValueError, match="match no linear layer"):
        apply_lora(Transformer(ModelConfig(**GPT2)), LoRAConfig(targets=["query_key_value"]))
