"""Image-quality metrics on [0, 1] images: PSNR and SSIM, each averaged over the test images.

Both are computed per image and then averaged over every test image (each image weighs the same,
whatever the batch sizes were). The running sums stay on the batch's device; nothing is synchronised
until ``result``. See docs/metrics.md for the exact definitions. Torch is imported by the functions
that compute, so that listing plugins does not import it.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING

from aeframe import MeanMetric, hookimpl

if TYPE_CHECKING:
    import torch

#: PSNR of an image reconstructed exactly (MSE 0) or almost exactly (MSE below 1e-10): the cap in dB.
PSNR_MAX_DB = 100.0

#: SSIM constants of Wang et al. (2004), for a data range of 1.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# PSNR and SSIM work in float64: E[x^2] - E[x]^2 in float32 loses about 1e-7, which is not small next to C2 = 9e-4.
# Images per chunk are chosen so that one chunk's five stacked maps hold at most this many elements.
_CHUNK_ELEMENTS = 1 << 24


class _PerImageMean(MeanMetric):
    """Mean over test images of a per-image value: one entry of the mean per image."""

    @abstractmethod
    def _per_image(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One value per image, shape (N,), float64."""

    def values(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if recon.shape != target.shape or recon.dim() != 4:
            raise ValueError(f"{self.name}: expected two (N, C, H, W) batches of one shape, "
                             f"got {tuple(recon.shape)} and {tuple(target.shape)}")
        if recon.shape[0] == 0:
            return recon.new_zeros(0)
        return self._per_image(recon, target)


class PSNR(_PerImageMean):
    """Peak signal-to-noise ratio, 10 log10(1 / MSE) per image (data range 1), mean over images."""

    name, title, better, format = "psnr", "PSNR (dB)", "higher", ".2f"

    def _per_image(self, recon, target):
        mse = (recon.double() - target.double()).square().flatten(1).mean(1)
        # MSE 0 would be +inf dB: floor the MSE at 10^(-cap / 10) so the result is at most the cap.
        return -10.0 * mse.clamp_min(10.0 ** (-PSNR_MAX_DB / 10.0)).log10()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, *, dtype=None, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (odd) centred on the middle tap (float64 unless ``dtype``)."""
    import torch

    dtype = dtype or torch.float64
    centre = (size - 1) / 2
    taps = torch.tensor([math.exp(-((i - centre) ** 2) / (2 * sigma**2)) for i in range(size)], dtype=dtype)
    return (taps / taps.sum()).to(device)


def ssim_per_image(recon: torch.Tensor, target: torch.Tensor, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
                   k1: float = SSIM_K1, k2: float = SSIM_K2, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image pair: mean of the 'valid' SSIM map per channel, then mean over channels.

    ``recon`` and ``target`` are (N, C, H, W); returns (N,) float64 on their device. Images smaller
    than the window use the largest odd window that fits (the same Gaussian, truncated and
    renormalised).
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = target.shape
    size = min(window, h, w)
    if size % 2 == 0:
        size -= 1
    g = gaussian_window(size, sigma, dtype=torch.float64, device=target.device)
    vertical = g.view(1, 1, size, 1).repeat(5 * c, 1, 1, 1)
    horizontal = g.view(1, 1, 1, size).repeat(5 * c, 1, 1, 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    per_chunk = max(1, _CHUNK_ELEMENTS // (5 * c * h * w))
    out = []
    for x, y in zip(recon.split(per_chunk), target.split(per_chunk)):
        x, y = x.double(), y.double()
        # Local (Gaussian-weighted) moments of all five maps at once: one depthwise conv per axis.
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
        moments = F.conv2d(F.conv2d(maps, vertical, groups=5 * c), horizontal, groups=5 * c)
        mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        var_x, var_y, cov = xx - mu_xx, yy - mu_yy, xy - mu_xy
        ssim_map = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
        out.append(ssim_map.mean(dim=(1, 2, 3)))  # every channel's map has the same size
    return torch.cat(out)


class SSIM(_PerImageMean):
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03."""

    name, title, better, format = "ssim", "SSIM", "higher", ".4f"

    def _per_image(self, recon, target):
        return ssim_per_image(recon, target)


@hookimpl
def register_metrics(register):
    register(PSNR())
    register(SSIM())
