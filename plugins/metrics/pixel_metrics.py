"""Per-pixel reconstruction errors on [0, 1] images, as the study reports them (section 5.1).

Each is the mean over every element of every test image: batch-size weighted, as fastai's metrics
were. Nothing here imports torch until a batch arrives.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aeframe import MeanMetric, hookimpl

if TYPE_CHECKING:
    import torch


class MAE(MeanMetric):
    """Mean absolute error over every element."""

    name, title, better, format = "mae", "MAE", "lower", ".6f"

    def values(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (recon.float() - target.float()).abs()


class MSE(MeanMetric):
    """Mean squared error over every element."""

    name, title, better, format = "mse", "MSE", "lower", ".6f"

    def values(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (recon.float() - target.float()).square()


@hookimpl
def register_metrics(register):
    register(MAE())
    register(MSE())
