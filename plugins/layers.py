"""Building blocks of the study's models (its model_layers.py), shared by the built-in techniques."""
from __future__ import annotations

import torch
from torch import nn


def convblock(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv without bias (BatchNorm follows), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def downsamp(channels: int, size: int) -> nn.Sequential:
    """Adaptive max-pool to ``size`` x ``size`` (an output size, not a factor), BatchNorm, ReLU."""
    return nn.Sequential(nn.AdaptiveMaxPool2d(size), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling, BatchNorm of the input, 3x3 conv with bias, BatchNorm, ReLU.

    ``scale`` is kept as a plain attribute so a schedule may change it between phases (progressive
    resizing sets the last block's scale from 1 to 2).
    """

    def __init__(self, c_in: int, c_out: int, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.bn_in = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn_out = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return torch.relu(self.bn_out(self.conv(self.bn_in(x))))


class Unflatten(nn.Module):
    """A flat vector back to a (channels, side, side) map (the study's ``reshape`` layer)."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.shape = (channels, side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


class Clamp01(nn.Module):
    """Hard clamp to [0, 1]: the study's output has no sigmoid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1)
