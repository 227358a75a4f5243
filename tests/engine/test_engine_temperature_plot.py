"""The books' temperature figure (issue 19 item 8): softmax(z / T) and its bar chart."""
from __future__ import annotations

import math

import pytest
import torch

from zerollm.engine.sampling import plot_temperature, softmax_with_temperature


def test_softmax_with_temperature_limits():
    z = [2.0, 1.0, 0.5, -1.0]
    p1 = softmax_with_temperature(z, 1.0)
    assert torch.allclose(p1, torch.tensor(z).softmax(-1))
    cold, hot = softmax_with_temperature(z, 0.05), softmax_with_temperature(z, 100.0)
    assert cold[0] > 0.999 and (hot - 0.25).abs().max() < 0.01  # argmax-like / uniform-like
    e = [math.exp(v / 0.5) for v in z]
    assert softmax_with_temperature(z, 0.5)[1].item() == pytest.approx(e[1] / sum(e), rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(z, 0.0)


def test_plot_temperature_writes_a_png(tmp_path):
    out = plot_temperature([2.0, 1.0, 0.5, -1.0], (0.5, 1.0, 2.0), labels=["cat", "dog", "fish", "car"],
                           out=tmp_path / "t.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="labels"):
        plot_temperature([1.0, 2.0], labels=["a"], out=tmp_path / "x.png")
