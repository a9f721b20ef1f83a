"""Third-party techniques whose models Progressive Resizing cannot shrink: their output has the images'
side whatever the input's (the latent is a vector). One upsamples with a transposed convolution, which
has no settable ``scale``; the other with a block that has an integer ``scale`` attribute its forward
does not use. Like a plugin, this imports nothing but ``aeframe`` (and torch); the tests register it
through an entry point."""
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
    model = FixedSide

    def build_model(self, ctx):
        return self.model(ctx.shape)


class FixedUpsample(nn.Module):
    """Doubles the side whatever its ``scale`` says: the attribute is only a record."""

    scale = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class IgnoredScale(FixedSide):
    def __init__(self, shape: tuple[int, int, int]):
        super().__init__(shape)
        channels = shape[0]
        self.decode = nn.Sequential(FixedUpsample(), nn.Conv2d(8, channels, 3, padding=1))


class IgnoredScaleTechnique(FixedSideTechnique):
    name = "ignored-scale"
    title = "Ignored Scale"
    description = "a model whose output keeps its side, with a scale attribute that sets nothing"
    model = IgnoredScale


@hookimpl
def register_techniques(register):
    register(FixedSideTechnique())
    register(IgnoredScaleTechnique())
