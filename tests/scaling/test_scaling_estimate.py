"""The estimator against published training compute and hand arithmetic (scaling/estimate.py)."""
from __future__ import annotations

import pytest
import torch

from zerollm.config import model_config_from_preset
from zerollm.model.transformer import Transformer
from zerollm.scaling.estimate import (PEAK_BF16_FLOPS, memory_per_device, parse_count, size_from_config,
                                      size_from_count, train_time_s, training_flops)

GiB = 1024 ** 3


@pytest.mark.parametrize("params, tokens, published", [
    ("175B", "300B", 3.14e23),  # GPT-3 (Brown et al. 2020, table D.1)
    ("70B", "1.4T", 5.76e23),   # Chinchilla (Hoffmann et al. 2022, table 3)
    ("7B", "2T", 8.4e22),       # Llama-2-7B (Touvron et al. 2023: 2T tokens; 6ND)
])
def test_published_training_compute_within_5_percent(params, tokens, published):
    C = training_flops(size_from_count(parse_count(params)), parse_count(tokens), attention=False)
    assert abs(C - published) / published < 0.05


def test_attention_term_is_the_model_count():
    """With a shape, C = flops_per_token(T) x D: the same count Transformer.flops_per_token gives."""
    cfg = model_config_from_preset("llama-5m", vocab_size=1000)
    size = size_from_config(cfg, seq_len=256)
    with torch.device("meta"):
        m = Transformer(cfg)
    assert size.params == m.num_params() and size.params_non_embedding == m.num_params(non_embedding=True)
    assert training_flops(size, 1000) == m.flops_per_token(256) * 1000
    # GPT-3's shape (96 x 12288, T = 2048): the attention term adds ~3%, still within 5% of 3.14e23
    gpt3 = size_from_count(175_000_000_000, seq_len=2048)
    assert gpt3.n_layer == 96 and gpt3.d_model == 12288
    assert abs(training_flops(gpt3, 300e9) - 3.14e23) / 3.14e23 < 0.05


def test_memory_matches_hand_arithmetic():
    size = size_from_count(7_000_000_000)
    bf16 = memory_per_device(size, precision="bf16")
    assert round(bf16["weights"] / GiB, 2) == 13.04  # 7e9 x 2 bytes
    mixed = memory_per_device(size, precision="mixed")
    per_param = (mixed["weights"] + mixed["grads"] + mixed["optimizer"]) / size.params
    assert per_param == 16  # 2 + 2 + 12 (ZeRO paper §3.1)
    fsdp = memory_per_device(size, precision="mixed", sharding="fsdp", devices=8)
    assert fsdp["optimizer"] * 8 == mixed["optimizer"] and fsdp["activations"] == mixed["activations"]
    ck = memory_per_device(size, micro_batch=2, checkpointing=True)
    full = memory_per_device(size, micro_batch=2)
    T, b, d, L, V = 4096, 2, 4096, 32, size.vocab_size
    assert full["activations"] == 34 * T * b * d * L + 8 * T * b * V  # Korthikanti et al. 2022
    assert ck["activations"] == 2 * T * b * d * L + 34 * T * b * d + 8 * T * b * V


def test_time_and_bad_input():
    C = 6 * 7e9 * 2e12
    t = train_time_s(C, peak=PEAK_BF16_FLOPS["h100"], mfu=0.5, devices=1000)
    assert abs(t - C / (1000 * 989.4e12 * 0.5)) < 1e-6
    for bad in ("7X", "", "B7"):
        with pytest.raises(ValueError, match="cannot parse"):
            parse_count(bad)
    with pytest.raises(ValueError, match="MFU"):
        train_time_s(C, peak=1.0, mfu=0.0)


def test_estimate_cli(tmp_path, capsys):
    from zerollm import cli

    assert cli.main(["estimate", "--params", "7X", "--tokens", "1T"]) == 2
    err = capsys.readouterr().err
    assert "7X" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["estimate", "--preset", "gpt-1m", "--tokens", "1M", "--accelerator", "warp9"]) == 2
    assert cli.main(["estimate", "--params", "70B", "--tokens", "1.4T", "--devices", "64", "--price", "2"]) == 0
    out = capsys.readouterr().out
    assert "6ND = 5.880e+23" in out and "FSDP x64" in out and "cost at $2.00" in out


def test_measure_mfu_times_real_steps():
    from zerollm.scaling.estimate import measure_mfu

    cfg = model_config_from_preset("gpt-1m", vocab_size=256, n_layer=1, d_model=32, n_head=2, max_seq_len=32)
    m = measure_mfu(cfg, batch_size=2, seq_len=32, steps=4)
    assert m["tok_per_s"] > 0 and 0 < m["mfu"] < 1
