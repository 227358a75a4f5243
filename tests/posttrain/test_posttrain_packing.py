"""Sequence packing with document masking: a packed row computes exactly what its documents compute alone
(block-diagonal causal attention, positions restarting per document), for RoPE and learned positions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zerollm.config import ModelConfig
from zerollm.model.layers import document_mask
from zerollm.model.transformer import Transformer
from zerollm.objectives import SFTObjective, evaluate_sft
from zerollm.posttrain import data as D

V = 50
ARCHS = {
    "llama": dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, n_kv_head=1),  # GQA 2:1
    "gpt2": dict(norm="layernorm", mlp="gelu", position="learned", bias=True),
}


def _model(arch: str) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, n_layer=2, n_head=2, d_model=32, max_seq_len=32, **ARCHS[arch])
    return Transformer(cfg).eval()


def _docs() -> list[tuple[list[int], list[int]]]:
    """Three (ids, labels) examples; labels are -100 on a 'prompt' prefix, as encode_sft makes them."""
    g = torch.Generator().manual_seed(1)
    out = []
    for n, prompt in ((5, 2), (7, 3), (4, 1)):
        seq = torch.randint(3, V, (n + 1,), generator=g).tolist()
        labels = [D.IGNORE_INDEX] * prompt + seq[prompt + 1:]
        out.append((seq[:-1], labels))
    return out


def test_document_mask_is_block_diagonal_causal():
    seg = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask, pos = document_mask(seg)
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0]]
    expect = torch.tensor([[1, 0, 0, 0, 0, 0],
                           [1, 1, 0, 0, 0, 0],
                           [0, 0, 1, 0, 0, 0],
                           [0, 0, 1, 1, 0, 0],
                           [0, 0, 1, 1, 1, 0],
                           [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert mask.shape == (1, 1, 6, 6) and torch.equal(mask[0, 0], expect)


def test_pack_places_whole_examples_with_segment_ids():
    ex = [([1, 2, 3], [2, 3, -100]), ([4, 5], [5, -100]), ([6, 7, 8, 9], [7, 8, 9, -100]), ([1] * 9, [1] * 9)]
    rows = D.pack(ex, 5)
    assert [r[0] for r in rows] == [[1, 2, 3, 4, 5], [6, 7, 8, 9], [1] * 5, [1] * 4]
    assert [r[2] for r in rows] == [[0, 0, 0, 1, 1], [0, 0, 0, 0], [0] * 5, [0] * 4]
    x, y, seg = D.pad_batch(rows[:2], pad_id=0, length=6)
    assert seg.tolist() == [[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, -1, -1]]
    assert (y[seg == -1] == D.IGNORE_INDEX).all()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_packed_row_equals_documents_alone(arch):
    model, docs = _model(arch), _docs()
    data = D.SFTData(docs, batch_size=1, pad_id=0, seq_len=20, packing=True, shuffle=False)
    assert len(data.rows) == 1  # 5 + 7 + 4 = 16 tokens, one row, padded to 20
    x, y, seg = data.next_batch()
    with torch.no_grad():
        packed = model(x, segments=seg)[0]
        start = 0
        for ids, _ in docs:
            alone = model(torch.tensor([ids]))[0]
            assert (packed[start:start + len(ids)] - alone).abs().max().item() <= 1e-5
            start += len(ids)
        # without the document mask the later documents would see the earlier ones (the test can fail)
        assert (model(x)[0, 5:12] - model(torch.tensor([docs[1][0]]))[0]).abs().max().item() > 1e-3
        # the loss of the packed batch is the token-weighted loss of the documents alone
        loss, _ = SFTObjective().loss(model, (x, y, seg))
        total = sum(F.cross_entropy(model(torch.tensor([i]))[0], torch.tensor(l), ignore_index=-100,
                                    reduction="sum") for i, l in docs)
        n = sum(sum(t != -100 for t in l) for _, l in docs)
        assert abs(loss.item() - total.item() / n) <= 1e-5
        assert abs(evaluate_sft(model, [(x, y, seg)])["val_loss"] - total.item() / n) <= 1e-5


def test_packed_gradients_equal_documents_alone():
    model, docs = _model("llama"), _docs()
    x, y, seg = D.pad_batch(D.pack(docs, 20), pad_id=0, length=20)
    model.train()
    SFTObjective().loss(model, (x, y, seg))[0].backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    n = sum(sum(t != -100 for t in l) for _, l in docs)
    for ids, labels in docs:
        logits = model(torch.tensor([ids]))[0]
        (F.cross_entropy(logits, torch.tensor(labels), ignore_index=-100, reduction="sum") / n).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(packed[name], p.grad, atol=1e-5), name


def test_segments_refuse_a_kv_cache():
    from zerollm.model.kv_cache import KVCache

    model = _model("llama")
    with pytest.raises(ValueError, match="segments"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=KVCache(2, 1, 1, 8, 16),
              segments=torch.zeros(1, 3, dtype=torch.long))
