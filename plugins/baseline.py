"""The study's Baseline autoencoder (seed-protocol.md section 2.2) trained with its protocol.

For a 3x32x32 input: two conv stages that pool to 16x16 and 8x8, a 1000-d linear bottleneck, and a
decoder of two nearest-neighbour upsample blocks, clamped to [0, 1]: 3,080,629 parameters. Other
image sizes scale the pooled grids with the side (H/2, H/4), so the same design serves 1x28x28.
"""
from __future__ import annotations

import torch
from torch import nn

from aeframe import CellContext, Param, Technique, hookimpl
from aeframe.protocol import ImageNetNormalize, study_schedule
from aeframe.schedule import Schedule
from aeframe_builtins.layers import Clamp01, Unflatten, Upsample, convblock, downsamp


class BaselineAE(nn.Module):
    """Encoder and decoder as named submodules, so techniques can replace or adjust parts of them."""

    def __init__(self, shape: tuple[int, int, int], latent: int = 1000):
        super().__init__()
        channels, height, width = shape
        if height != width or height % 4:
            raise ValueError(f"the Baseline needs square images with a side divisible by 4, got {height}x{width}")
        grid = height // 4
        self.normalize = ImageNetNormalize(channels)
        self.encoder = nn.Sequential(
            convblock(channels, 12),
            downsamp(12, height // 2),
            convblock(12, 24),
            downsamp(24, grid),
            nn.Flatten(),
            nn.Linear(24 * grid * grid, latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 24 * grid * grid),
            Unflatten(24, grid),
            Upsample(24, 12),
            Upsample(12, channels),
            Clamp01(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.normalize(x)))


class Baseline(Technique):
    name = "baseline"
    title = "Baseline"
    description = "the study's conv autoencoder: 1000-d linear bottleneck, nearest-neighbour upsampling, MSE loss"
    params = (Param("latent", int, 1000, "size of the bottleneck vector"),)

    def build_model(self, ctx: CellContext) -> nn.Module:
        return BaselineAE(ctx.shape, latent=ctx.params["latent"])

    def build_loss(self, ctx: CellContext):
        return nn.functional.mse_loss

    def build_schedule(self, ctx: CellContext) -> Schedule:
        # The study's second-run rate for the Baseline is 1e-3 on both MNIST and CIFAR-10 (section 4).
        return study_schedule(second_lr=1e-3)


@hookimpl
def register_techniques(register):
    register(Baseline())
