"""Faster equal forms in the built-in layers: same outputs and same gradients, bit for bit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from aeframe_builtins.techniques.layers import MaxPoolTo


def _forward_backward(pool: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = pool(x)
    # Random weights give every output element its own gradient, so routing mistakes would show.
    (out * weights).sum().backward()
    return out.detach(), x.grad


def _inputs(side: int, seed: int, channels_last: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 12, side, side, generator=gen)
    if seed % 2:
        # After a ReLU half the values are 0: windows with tied maxima, where the gradient must
        # still go to the same element as the adaptive pool's.
        x = torch.relu(x)
    if seed % 3 == 0:
        x = x.round()  # ties among positive values too
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# The sides the built-in techniques pool: 32 -> 16 -> 8 (3x32x32 views), 28 -> 14 -> 7 (mnist
# native), 16 -> 16 and 16 -> 8 (progressive resizing's first phase), and odd or uneven ones.
@pytest.mark.parametrize(
    "side,size",
    [(32, 16), (16, 8), (28, 14), (14, 7), (16, 16), (8, 8), (15, 7), (7, 3), (30, 16), (12, 8)],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_to_equals_the_adaptive_max_pool_exactly(side, size, channels_last):
    for seed in range(4):
        x = _inputs(side, seed, channels_last)
        weights = torch.randn(4, 12, size, size, generator=torch.Generator().manual_seed(100 + seed))
        want_out, want_grad = _forward_backward(nn.AdaptiveMaxPool2d(size), x, weights)
        got_out, got_grad = _forward_backward(MaxPoolTo(size), x, weights)
        assert got_out.shape == (4, 12, size, size)
        assert torch.equal(got_out, want_out)
        assert torch.equal(got_grad, want_grad)


def test_max_pool_to_takes_the_short_forms_only_where_they_are_equal(monkeypatch):
    calls = []
    for name in ("max_pool2d", "adaptive_max_pool2d"):
        original = getattr(nn.functional, name)
        monkeypatch.setattr(nn.functional, name, lambda *a, _n=name, _f=original, **k: calls.append(_n) or _f(*a, **k))
    pool = MaxPoolTo(8)
    pool(torch.rand(1, 1, 16, 16))
    pool(torch.rand(1, 1, 8, 8))
    pool(torch.rand(1, 1, 15, 15))
    pool(torch.rand(1, 1, 16, 14))
    assert calls == ["max_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d"]


def test_study_models_have_the_studys_parameter_counts_with_the_faster_pool(registry):
    from techniques import build

    model = build("baseline", registry).model
    assert sum(p.numel() for p in model.parameters()) == 3_080_629
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
