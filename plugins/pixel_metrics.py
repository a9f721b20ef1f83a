"""Per-pixel reconstruction errors on [0, 1] images, as the study reports them (section 5.1)."""
from __future__ import annotations

from abc import abstractmethod

import torch

from aeframe import Metric, hookimpl


class _PixelMean(Metric):
    """Mean over every element of every test image: batch-size weighted, as fastai's metrics were."""

    @abstractmethod
    def _error(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-element error."""

    def update(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        self._sum = self._sum.to(recon.device) + self._error(recon.float(), target.float()).sum(dtype=torch.float64)
        self._count += recon.numel()


class MAE(_PixelMean):
    name, title, better, format = "mae", "MAE", "lower", ".6f"

    def _error(self, recon, target):
        return (recon - target).abs()


class MSE(_PixelMean):
    name, title, better, format = "mse", "MSE", "lower", ".6f"

    def _error(self, recon, target):
        return (recon - target).square()


@hookimpl
def register_metrics(register):
    register(MAE())
    register(MSE())
