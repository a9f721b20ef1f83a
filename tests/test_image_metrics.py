"""PSNR and SSIM (plugins/metrics/image_metrics.py) against values worked out by hand or by a slow reference."""
from __future__ import annotations

import math

import pytest
import torch

from aeframe import Metric
from aeframe_builtins.metrics import image_metrics
from aeframe_builtins.metrics.image_metrics import PSNR, PSNR_MAX_DB, SSIM

C1, C2 = 0.01**2, 0.03**2


def run(metric: Metric, recon: torch.Tensor, target: torch.Tensor, batch: int | None = None) -> float:
    """The metric over ``recon`` vs ``target``, fed in batches of ``batch`` images (all at once if None)."""
    metric.start(None)
    batch = batch or recon.shape[0]
    for r, t in zip(recon.split(batch), target.split(batch)):
        metric.update(r, t, torch.zeros(r.shape[0], dtype=torch.int64))
    return metric.result()


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- PSNR


def test_psnr_identical_images_give_the_cap():
    x = rand(4, 3, 32, 32)
    value = run(PSNR(), x, x.clone())
    assert value == PSNR_MAX_DB == 100.0 and isinstance(value, float)


def test_psnr_of_a_uniform_error_of_0_1_is_20_db():
    target = 0.9 * rand(5, 3, 32, 32)  # in [0, 0.9], so target + 0.1 stays in range: MSE = 0.01
    recon = target + 0.1
    assert recon.max() <= 1.0
    assert run(PSNR(), recon, target) == pytest.approx(20.0, abs=1e-5)


def test_psnr_is_the_mean_of_per_image_psnrs_not_the_psnr_of_the_mean_mse():
    target = torch.full((2, 1, 28, 28), 0.5)
    recon = target.clone()
    recon[0] += 0.1  # MSE 0.01 -> 20 dB
    recon[1] += 0.01  # MSE 0.0001 -> 40 dB
    value = run(PSNR(), recon, target)
    assert value == pytest.approx((20.0 + 40.0) / 2, abs=1e-4)
    psnr_of_mean_mse = 10 * math.log10(1 / ((0.01 + 0.0001) / 2))  # 22.97 dB: a different number
    assert abs(value - psnr_of_mean_mse) > 5


def test_psnr_caps_only_the_exact_image_in_a_mixed_batch():
    target = torch.full((2, 1, 28, 28), 0.25)
    recon = target.clone()
    recon[1] += 0.1
    assert run(PSNR(), recon, target) == pytest.approx((100.0 + 20.0) / 2, abs=1e-4)


def test_psnr_batches_accumulate_like_one_batch():
    target = rand(10, 3, 32, 32, seed=1)
    recon = (target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    whole = run(PSNR(), recon, target)
    assert run(PSNR(), recon, target, batch=3) == pytest.approx(whole, rel=1e-12)
    assert run(PSNR(), recon, target, batch=1) == pytest.approx(whole, rel=1e-12)


# ---------------------------------------------------------------- SSIM


def gaussian(size: int = 11, sigma: float = 1.5) -> list[float]:
    taps = [math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    return [t / sum(taps) for t in taps]


def reference_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Wang et al. 2004 for one (C, H, W) pair, one window position at a time, in Python floats."""
    g = gaussian()
    k = len(g)
    xs, ys = x.double().tolist(), y.double().tolist()
    per_channel = []
    for xc, yc in zip(xs, ys):
        values = []
        for top in range(len(xc) - k + 1):
            for left in range(len(xc[0]) - k + 1):
                mx = my = sxx = syy = sxy = 0.0
                for i in range(k):
                    for j in range(k):
                        w = g[i] * g[j]
                        a, b = xc[top + i][left + j], yc[top + i][left + j]
                        mx += w * a
                        my += w * b
                        sxx += w * a * a
                        syy += w * b * b
                        sxy += w * a * b
                vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
                values.append((2 * mx * my + C1) * (2 * cov + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2)))
        per_channel.append(sum(values) / len(values))
    return sum(per_channel) / len(per_channel)


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 1, 28, 28)])
def test_ssim_of_identical_images_is_one(shape):
    x = rand(*shape)
    value = run(SSIM(), x, x.clone())
    assert value == pytest.approx(1.0, abs=1e-12) and isinstance(value, float)


@pytest.mark.parametrize("a, b", [(0.2, 0.7), (0.0, 1.0), (0.5, 0.52), (0.0, 0.0)])
def test_ssim_of_constant_images_is_the_luminance_term(a, b):
    # No variance anywhere: the contrast-structure factor is C2 / C2 = 1 and only luminance is left.
    recon, target = torch.full((2, 3, 32, 32), a), torch.full((2, 3, 32, 32), b)
    a, b = recon[0, 0, 0, 0].item(), target[0, 0, 0, 0].item()  # the float32 values actually compared
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert run(SSIM(), recon, target) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_a_checkerboard_against_its_negation():
    # target: 0/1 checkerboard; recon = 1 - target. In every window the Gaussian weights on the two
    # colours differ by D = s^2, s the alternating sum of the 1-D taps, so every window has
    # mu = 0.5 +- D/2, var_x = var_y = (1 - D^2) / 4, cov = -(1 - D^2) / 4: the SSIM map is constant.
    i = torch.arange(32)
    target = ((i[:, None] + i[None, :]) % 2).double().expand(2, 3, 32, 32)
    recon = 1 - target
    s = sum((-1) ** k * w for k, w in enumerate(gaussian()))
    d = s * s
    mu_x, mu_y, var = 0.5 + d / 2, 0.5 - d / 2, (1 - d * d) / 4
    expected = (2 * mu_x * mu_y + C1) * (-2 * var + C2) / ((mu_x**2 + mu_y**2 + C1) * (2 * var + C2))
    assert expected == pytest.approx((C2 - 0.5) / (C2 + 0.5), abs=1e-8)  # D is tiny: -0.99641
    assert run(SSIM(), recon.float(), target.float()) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_independent_noise_is_near_zero():
    # Two independent uniform images: the structure term averages out, so SSIM is about 0.
    value = run(SSIM(), rand(4, 3, 32, 32, seed=3), rand(4, 3, 32, 32, seed=4))
    assert abs(value) < 0.02


def test_ssim_matches_a_slow_reference_on_random_images():
    target = rand(1, 3, 16, 16, seed=5)
    recon = (target + 0.2 * torch.randn(target.shape, generator=torch.Generator().manual_seed(6))).clamp(0, 1)
    expected = reference_ssim(recon[0], target[0])
    assert 0.1 < expected < 0.9  # a case where every term matters
    assert run(SSIM(), recon, target) == pytest.approx(expected, abs=1e-5)
    # ... and per image inside a batch: the mean of the references
    other = rand(1, 3, 16, 16, seed=7)
    both = run(SSIM(), torch.cat([recon, other]), torch.cat([target, target]))
    assert both == pytest.approx((expected + reference_ssim(other[0], target[0])) / 2, abs=1e-5)


def test_ssim_is_symmetric_and_batch_invariant():
    target = rand(7, 3, 32, 32, seed=8)
    recon = (0.7 * target + 0.3 * rand(7, 3, 32, 32, seed=9)).clamp(0, 1)
    whole = run(SSIM(), recon, target)
    assert run(SSIM(), recon, target, batch=3) == pytest.approx(whole, abs=1e-12)
    assert run(SSIM(), recon, target, batch=1) == pytest.approx(whole, abs=1e-12)
    assert run(SSIM(), target, recon) == pytest.approx(whole, abs=1e-12)


def test_ssim_start_resets_the_running_state():
    metric, x = SSIM(), rand(2, 1, 28, 28)
    run(metric, rand(2, 1, 28, 28, seed=10), x)
    assert run(metric, x, x) == pytest.approx(1.0)


def test_ssim_images_smaller_than_the_window_use_a_smaller_window():
    x = rand(2, 3, 8, 8)
    assert run(SSIM(), x, x) == pytest.approx(1.0)
    assert run(SSIM(), torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.7)) == pytest.approx(
        (2 * 0.2 * 0.7 + C1) / (0.2**2 + 0.7**2 + C1))


# ---------------------------------------------------------------- registration


def test_plugin_registers_psnr_and_ssim_metrics():
    found: list = []
    image_metrics.register_metrics(found.append)
    assert all(isinstance(m, Metric) for m in found)
    described = {(m.name, m.title, m.better, m.format) for m in found}
    assert described == {("psnr", "PSNR (dB)", "higher", ".2f"), ("ssim", "SSIM", "higher", ".4f")}


def test_builtins_include_image_metrics_next_to_pixel_metrics():
    from aeframe.registry.plugins import build_registry

    registry = build_registry(autoload=False)
    assert {"mae", "mse", "psnr", "ssim"} <= set(registry.metrics)
    assert registry.plugin_of("metric", "ssim").name == "psnr_ssim"
    assert registry.plugin_of("metric", "psnr").builtin
    assert registry.warnings == []
