"""Weight-only quantization: round-trip error bounds per scheme, QuantLinear == dequantized Linear (native
GEMV kernels and the PyTorch path), quantized checkpoints save and load back, `memory` arithmetic."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from zerollm.config import ModelConfig
from zerollm.engine.generate import GenerationConfig, generate
from zerollm import kernels
from zerollm.model.quant import (NATIVE_MAX_ROWS, NF4_LEVELS, SCHEMES, QuantLinear, dequantize_weight,
                                 quantize_model, quantize_weight)
from zerollm.model.transformer import Transformer


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_error_bounds(scheme):
    torch.manual_seed(0)
    w = torch.randn(48, 128)
    q = quantize_weight(w, scheme, group_size=32)
    wq = dequantize_weight(q, scheme, tuple(w.shape))
    err = (w - wq).abs()
    if scheme == "int8":  # half a step per row
        assert torch.all(err <= (w.abs().amax(1, keepdim=True) / 127) / 2 + 1e-6)
    elif scheme == "int4-sym":
        step = w.view(48, 4, 32).abs().amax(-1, keepdim=True) / 7
        assert torch.all(err.view(48, 4, 32) <= step / 2 + 1e-6)
    elif scheme == "int4-asym":
        g = w.view(48, 4, 32)
        step = (g.amax(-1, keepdim=True) - g.amin(-1, keepdim=True)) / 15
        assert torch.all(err.view(48, 4, 32) <= step / 2 + 1e-6)
    else:  # nf4: every value is a level times its (double-quantized) block absmax
        blocks = w.reshape(-1, 64)
        gap = (NF4_LEVELS[1:] - NF4_LEVELS[:-1]).max()
        assert torch.all(err.reshape(-1, 64) <= blocks.abs().amax(1, keepdim=True) * (gap / 2 + 0.02))
    rel = float((w - wq).norm() / w.norm())
    assert rel < {"int8": 0.01, "int4-sym": 0.12, "int4-asym": 0.1, "nf4": 0.11}[scheme], rel


def _kernel_reference(x, ql):
    """What the native kernel computes: weights as stored (NF4 levels rounded to 1/127, as the integer dot
    product uses them), activations rounded per block of 32 (kernels.quantize_activations), float64 sums."""
    w = ql.dequantize().double()
    if ql.scheme == "nf4":
        codes = torch.stack([ql.qweight >> 4, ql.qweight & 0xF], -1).flatten(-2).long()
        levels = kernels.nf4_kernel_levels(NF4_LEVELS).double()
        w = w * (levels[codes] / NF4_LEVELS.double()[codes]).nan_to_num(1.0)  # exact zero level stays 0
    b = None if ql.bias is None else ql.bias.double()
    return torch.nn.functional.linear(kernels.quantize_activations(x).double(), w, b)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("kernel,cache", [("native", None), ("dequant", "dequant"), ("dequant", None)])
def test_quant_linear_equals_its_reference(scheme, kernel, cache, native):
    torch.manual_seed(1)
    lin = torch.nn.Linear(128, 96)
    ql = QuantLinear.from_linear(lin, scheme, 32, cache=cache, kernel=kernel)
    assert ql.native_ok() == (kernel == "native")
    w = ql.dequantize()
    for shape in [(1, 128), (3, 5, 128), (9, 128), (NATIVE_MAX_ROWS + 1, 128)]:  # 9: two passes of 8 rows
        x = torch.randn(*shape)
        with torch.no_grad():
            y = ql(x)
        exact = torch.nn.functional.linear(x, w, lin.bias)
        if kernel == "native" and x.numel() // 128 <= NATIVE_MAX_ROWS:  # decode-sized: the integer kernel
            assert (y.double() - _kernel_reference(x, ql)).abs().max() < 1e-5, shape
            assert (y - exact).abs().max() < 0.02 * exact.abs().max()  # activation rounding: < 2 % of max
        else:  # prompts and the PyTorch path: exactly the dequantized weights
            assert torch.allclose(y, exact, atol=1e-5), shape
    if scheme == "int8":
        qa = QuantLinear.from_linear(lin, scheme, kernel="aten")
        assert torch.allclose(qa(x), exact, atol=1e-4)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_native_kernels_on_odd_widths_and_a_large_projection(scheme, native):
    torch.manual_seed(2)
    for n, k in [(200, 192), (5003, 256)]:
        lin = torch.nn.Linear(k, n, bias=False)
        lin.weight.data *= 5
        ql = QuantLinear.from_linear(lin, scheme, 64, kernel="native")
        x = torch.randn(3, k)
        with torch.no_grad():
            y = ql(x)
        ref = _kernel_reference(x, ql)
        assert (y.double() - ref).abs().max() < 1e-5 * ref.abs().max(), scheme
    w = torch.randn(n, k)
    for rows in (1, 2, 3, 4, 9):  # fp32 (8, 4, 2, 1 weight rows per pass): F.linear up to the order of the additions
        x = torch.randn(rows, k)
        assert torch.allclose(native.gemv_f32(x, w, None), x @ w.t(), atol=1e-4)


def test_native_kernel_falls_back_when_it_cannot_apply(native):
    torch.manual_seed(3)
    lin = torch.nn.Linear(48, 16)  # 48 is not a multiple of 32: PyTorch path
    ql = QuantLinear.from_linear(lin, "int8")
    assert not ql.native_ok()
    x = torch.randn(2, 48)
    assert torch.allclose(ql(x), torch.nn.functional.linear(x, ql.dequantize(), lin.bias), atol=1e-5)
    # an input that needs gradients (LoRA/QLoRA training) takes the differentiable path
    ql = QuantLinear.from_linear(torch.nn.Linear(64, 8), "int4-sym")
    x = torch.randn(2, 64, requires_grad=True)
    ql(x).sum().backward()
    assert torch.allclose(x.grad, ql.dequantize().sum(0).expand(2, -1), atol=1e-5)


def _trained_tiny():
    """A tiny model trained for a few steps on a repetitive sequence, so greedy decoding is confident."""
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=64, max_seq_len=64))
    data = torch.tensor([[(3 * i + i // 7) % 64 for i in range(65)]] * 4)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(m(data[:, :-1]).flatten(0, 1), data[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_quantized_checkpoint_round_trip_and_greedy_match(tmp_path):
    from zerollm.stages.quantize import quantize
    from zerollm.loading import load
    from zerollm.train.checkpoint import save_checkpoint

    m = _trained_tiny()
    save_checkpoint(tmp_path / "ckpt", m, m.cfg)
    cfg = GenerationConfig(max_new_tokens=32, temperature=0, stop_token_ids=[])
    ref = generate(m, None, [3, 6, 9], cfg)
    for scheme in SCHEMES:
        out = quantize(tmp_path / "ckpt", tmp_path / scheme, scheme=scheme)
        assert json.loads((out / "quant.json").read_text())["scheme"] == scheme
        qm = load(out).model
        n_quant = sum(isinstance(x, QuantLinear) for x in qm.modules())
        # every Linear, and the tied output projection as its own quantized lm_head
        assert m.lm_head is None and qm.lm_head.scheme == "int8"  # output projection: int8 by default
        assert n_quant == sum(isinstance(x, torch.nn.Linear) for x in m.modules()) + 1 > 1
        direct = quantize_model(copy.deepcopy(m), scheme)
        x = torch.tensor([[1, 2, 3, 4]])
        with torch.no_grad():
            assert torch.allclose(qm(x), direct(x), atol=1e-5)
        if scheme == "int8":
            assert generate(qm, None, [3, 6, 9], cfg) == ref  # int8 greedy == fp32 for 32 tokens


def test_memory_table():
    from zerollm.stages.quantize import memory, parse_params

    assert parse_params("7B") == 7_000_000_000 and parse_params("124M") == 124_000_000
    text = memory(params="7B", context=4096, batch=1)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:]}
    assert abs(float(rows["fp32"][0]) - 7e9 * 4 / 2**30) < 0.01
    assert abs(float(rows["int4"][0]) - 7e9 * 5 / 8 / 2**30) < 0.01  # 4 bits + one fp32 scale per 32
    # Llama-2-7B KV cache at 4096 tokens in bf16: 2 * 32 layers * 4096 dims * 4096 * 2 bytes = 2 GiB
    assert rows["bf16"][2] == "2.00"


def test_cli_threads_option_sets_torch_threads(tmp_path, capsys):
    from zerollm import cli

    before = torch.get_num_threads()
    try:
        assert cli.main(["--threads", "2", "memory", "--params", "1M"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert cli.main(["--threads", "0", "memory", "--params", "1M"]) == 2  # one-line error, exit 2
    assert "--threads must be at least 1" in capsys.readouterr().err
