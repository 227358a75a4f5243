"""The encoder-decoder: variants build and train, padding does not leak, the KV cache and the once-per-sentence
cross-attention K/V give the full forward's logits, the sinusoidal table is the paper's formula."""
import math

import pytest
import torch

from zerollm.model.seq2seq import (
    Seq2Seq,
    Seq2SeqConfig,
    cross_attention,
    sinusoidal_table,
)

PAD, BOS, EOS = 0, 1, 2
VARIANTS = [{}, {"norm_first": True}, {"position": "learned"}, {"position": "rope", "norm_first": True},
            {"share_embeddings": False, "src_vocab_size": 40, "tie_output": False}, {"mlp": "gelu_exact"}]


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    base = {"vocab_size": 50, "d_model": 32, "n_head": 4, "n_enc_layer": 2, "n_dec_layer": 2, "d_ff": 64, "dropout": 0.0,
                "max_seq_len": 32, "pad_id": PAD, "bos_id": BOS, "eos_id": EOS}
    return Seq2Seq(Seq2SeqConfig(**{**base, **kw})).eval()


def test_sinusoidal_table_is_the_paper_formula():
    pe = sinusoidal_table(20, 8)
    for pos in (0, 3, 19):
        for i in range(4):  # PE(pos, 2i) = sin(pos / 10000^(2i/d)) in the first half, cos in the second
            angle = pos / 10000 ** (2 * i / 8)
            assert pe[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 4 + i].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("kw", VARIANTS)
def test_variants_forward_and_learn(kw):
    m = tiny(**kw).train()
    src = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD]])
    tgt = torch.tensor([[BOS, 10, 11], [BOS, 12, 13]])
    y = torch.tensor([[10, 11, EOS], [12, 13, EOS]])
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(m(src, tgt).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    vocab = "source vocab 40, target vocab 50" if kw.get("src_vocab_size") else "vocab 50"
    assert vocab in m.describe()


@pytest.mark.parametrize("kw", VARIANTS)
def test_source_padding_does_not_change_the_output(kw):
    m = tiny(**kw)
    tgt = torch.tensor([[BOS, 10, 11, 12]])
    a = m(torch.tensor([[5, 6, 7, EOS]]), tgt)
    b = m(torch.tensor([[5, 6, 7, EOS, PAD, PAD, PAD]]), tgt)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kw", VARIANTS)
def test_decoder_is_causal_and_cache_matches_full_forward(kw):
    m = tiny(**kw)
    src = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD]])
    tgt = torch.tensor([[BOS, 10, 11, 12, 13], [BOS, 14, 15, 16, 17]])
    full = m(src, tgt)
    changed = tgt.clone()
    changed[:, -1] = 20  # a later token cannot change earlier positions
    assert torch.allclose(m(src, changed)[:, :-1], full[:, :-1], atol=1e-5)
    memory, mask = m.encode(src)
    kv = m.memory_kv(memory)  # once per source sentence
    cache = m.new_cache(2, 8)
    steps = [m.decode(tgt[:, t:t + 1], kv, mask, cache) for t in range(tgt.shape[1])]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert cache.pos == tgt.shape[1]


def test_cross_attention_rows_are_distributions_over_real_source_tokens():
    m = tiny()
    w = cross_attention(m, [5, 6, 7, EOS], [BOS, 10, 11])
    assert w.shape == (3, 4)
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-5)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="position"):
        Seq2SeqConfig(position="alibi")
    with pytest.raises(ValueError, match="joint"):
        Seq2SeqConfig(src_vocab_size=10, vocab_size=20, share_embeddings=True)
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny().encode(torch.ones(1, 40, dtype=torch.long))
