"""Salt-and-pepper denoising: the base technique's model, fed images with pixels set to black or white
while it trains.

The loss still compares the output with the clean image, so the model learns to remove the noise.
Evaluation runs in eval mode, where nothing is changed: every metric sees clean inputs. (aeframe's
built-in ``denoising`` does the same with Gaussian noise.)
"""
from __future__ import annotations

import torch
from torch import nn

from aeframe import CellContext, Param, Technique


class SaltAndPepper(nn.Module):
    """Sets a share ``amount`` of the input's pixels, half to 0 and half to 1, in training mode only."""

    def __init__(self, model: nn.Module, amount: float):
        super().__init__()
        self.model, self.amount = model, amount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.amount > 0:
            # One draw per pixel, shared by its channels, so that a pixel turns black or white whole.
            # torch's global generator: aeframe seeds it per cell, so runs repeat exactly.
            draw = torch.rand_like(x[:, :1])
            x = torch.where(draw < self.amount / 2, 0.0, torch.where(draw < self.amount, 1.0, x))
        return self.model(x)


class SaltAndPepperDenoising(Technique):
    name = "salt-and-pepper"
    # Its step is the same tensor work every time (the noise is drawn on the device, no Python state):
    # on a GPU aeframe may capture it in a CUDA graph (aeframe 0.3).
    cuda_graphs = True
    title = "Salt-and-Pepper Denoising"
    description = ("trains on inputs with a share of pixels set to black or white; the target and the evaluation "
                   "stay clean")
    params = (Param("amount", float, 0.05, "share of the training inputs' pixels set to 0 or 1, in [0, 1) "
                    "(0 turns it off)"),)
    base = "baseline"  # the model, loss and schedule come from the Baseline unless combined (-t salt-and-pepper+resnet)

    def check_params(self, params: dict) -> None:
        amount = params["amount"]
        if not 0 <= amount < 1:  # nan fails it too
            raise ValueError(f"amount={amount:g} is outside [0, 1); give the share of pixels to set to 0 or 1")

    def wrap_model(self, model: nn.Module, ctx: CellContext) -> nn.Module:
        return SaltAndPepper(model, ctx.params["amount"])
