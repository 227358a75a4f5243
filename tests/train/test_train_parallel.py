"""train/parallel.py in one process: activation checkpointing computes the same loss and gradients,
`auto` picks FSDP only when the training state does not fit, and a bad mode is a clear error."""
from __future__ import annotations

import copy

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.train.distributed import DistInfo
from zerollm.train.loop import TrainConfig
from zerollm.train.parallel import (
    activation_checkpointing,
    choose_parallel,
    training_state_bytes,
    wrap,
)


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=3, d_model=32, n_head=2, vocab_size=64, max_seq_len=32, dropout=0.0))


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    plain, ckpt = _model(), _model()
    activation_checkpointing(ckpt)
    assert all(type(b).__name__.startswith("Checkpointed") for b in ckpt.blocks)
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    for m in (plain, ckpt):
        torch.nn.functional.cross_entropy(m(x).flatten(0, 1), x.flatten()).backward()
    for (n, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0, msg=n)
    twin = copy.deepcopy(ckpt)  # a deepcopy (Reference models) checkpoints its own blocks, not the original's
    with torch.no_grad():
        torch.testing.assert_close(twin(x), ckpt(x))
    assert ckpt.state_dict().keys() == plain.state_dict().keys()  # checkpoints keep their tensor names


def test_wrap_in_one_process_and_auto_choice(monkeypatch):
    m = _model()
    w = wrap(m, TrainConfig(parallel="fsdp", activation_checkpointing=True), DistInfo())
    assert w.kind == "single" and w.model is m and w.base is m
    n = sum(p.numel() for p in m.parameters())
    assert training_state_bytes(m) == 16 * n  # fp32 weights + grads + two AdamW moments
    two = DistInfo(rank=0, world_size=2)
    import zerollm.train.parallel as par

    monkeypatch.setattr(par, "device_memory", lambda device: 100 * n)
    assert choose_parallel("auto", m, two) == "ddp"  # 16n of 100n fits
    monkeypatch.setattr(par, "device_memory", lambda device: 20 * n)
    assert choose_parallel("auto", m, two) == "fsdp"  # 16n > 0.6 × 20n
    m.requires_grad_(False)
    assert choose_parallel("auto", m, two) == "ddp"  # frozen weights: no gradients, no optimizer state
    for info in (two, DistInfo()):  # a typo is an error in one process too, not only under torchrun
        with pytest.raises(ValueError, match="train.parallel='zero3'"):
            choose_parallel("zero3", m, info)
    with pytest.raises(ValueError, match="expected one of ddp, fsdp, auto"):  # at config time, before any run dir
        TrainConfig(parallel="zero3")
