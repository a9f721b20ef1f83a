"""A third-party technique whose model Progressive Resizing cannot shrink: its output has the images'
side whatever the input's (the latent is a vector), and it upsamples with a transposed convolution,
which has no settable ``scale``. Like a plugin, it imports nothing but ``aeframe`` (and torch); the
tests register it through an entry point."""
from __future__ import annotations

import torch
from torch import nn

from aeframe import Technique, hookimpl


class FixedSide(nn.Module):
    """Pools any input to a vector, then decodes it to (C, H, W) of the dataset."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width = shape
        self.grid = (8, height // 2, width // 2)
        self.encode = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(channels * 16, 8 * height * width // 4))
        self.decode = nn.ConvTranspose2d(8, channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(x).view(x.shape[0], *self.grid)))


class FixedSideTechnique(Technique):
    name = "fixed-side"
    title = "Fixed Side"
    description = "a model whose output keeps its side, with no settable upsampling scale"

    def build_model(self, ctx):
        return FixedSide(ctx.shape)


@hookimpl
def register_techniques(register):
    register(FixedSideTechnique())
