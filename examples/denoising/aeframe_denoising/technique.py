"""A denoising autoencoder: the base technique's model, fed noisy images while it trains.

The loss still compares the output with the clean image, so the model learns to remove the noise.
Evaluation runs in eval mode, where nothing is added: every metric sees clean inputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from aeframe import CellContext, Param, Technique


class NoisyInput(nn.Module):
    """Adds Gaussian noise of standard deviation ``noise`` to the input in training mode only."""

    def __init__(self, model: nn.Module, noise: float):
        super().__init__()
        self.model, self.noise = model, noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise > 0:
            # torch's global generator: aeframe seeds it per cell, so runs repeat exactly.
            x = (x + self.noise * torch.randn_like(x)).clamp(0, 1)
        return self.model(x)


class Denoising(Technique):
    name = "denoising"
    # Its step is the same tensor work every time (the noise is drawn on the device, no Python state):
    # on a GPU aeframe may capture it in a CUDA graph (aeframe 0.3).
    cuda_graphs = True
    title = "Denoising"
    description = "trains on inputs with Gaussian noise added; the target and the evaluation stay clean"
    params = (Param("noise", float, 0.1, "standard deviation of the noise added to training inputs, in [0, 1] "
                    "pixel units (0 turns it off)"),)
    base = "baseline"  # the model, loss and schedule come from the Baseline unless combined (-t denoising+resnet)

    def check_params(self, params: dict) -> None:
        if not math.isfinite(params["noise"]):
            raise ValueError(f"noise={params['noise']:g} is not a number; give a standard deviation of 0 or more")
        if params["noise"] < 0:
            raise ValueError(f"noise={params['noise']:g} is negative; give a standard deviation of 0 or more")

    def wrap_model(self, model: nn.Module, ctx: CellContext) -> nn.Module:
        return NoisyInput(model, ctx.params["noise"])
