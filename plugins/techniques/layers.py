"""Building blocks of the study's models (its model_layers.py), shared by the built-in techniques,
and the Baseline's model built from them.

Every upsampling block here has an integer ``scale`` that may be changed between phases: it is
how progressive resizing trains the same model at a smaller output size first. Imported only when
a model is built: it needs torch, which registering the techniques must not import.
"""
from __future__ import annotations

import torch
from torch import nn

from aeframe import ImageNetNormalize


def convblock(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv without bias (BatchNorm follows), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MaxPoolTo(nn.Module):
    """The study's ``AdaptiveMaxPool2d(size)``, computed by a faster equal form where there is one.

    An adaptive max-pool from a side of exactly ``2 * size`` takes the maximum over the disjoint
    2x2 windows, which is ``max_pool2d(x, 2)``; from a side of ``size`` its windows are single pixels,
    so it is the identity. Both give the same values and the same gradients, bit for bit (a test
    checks it); other sides use the adaptive pool itself. The choice is made per call because
    progressive resizing feeds the same model a smaller image in its first phase.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height == width == self.size:
            return x
        if height == width == 2 * self.size:
            return nn.functional.max_pool2d(x, 2)
        return nn.functional.adaptive_max_pool2d(x, self.size)

    def extra_repr(self) -> str:
        return f"output_size={self.size}"


def downsamp(channels: int, size: int) -> nn.Sequential:
    """Adaptive max-pool to ``size`` x ``size`` (an output size, not a factor), BatchNorm, ReLU."""
    return nn.Sequential(MaxPoolTo(size), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``scale``, BatchNorm of the input, 3x3 conv with bias, BatchNorm, ReLU."""

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


def latent_grid(shape: tuple[int, int, int]) -> int:
    """Side of the 24-channel map at the bottleneck: a quarter of the image side (8 for 32x32)."""
    channels, height, width = shape
    if height != width or height % 4:
        raise ValueError(f"the study's autoencoders need square images with a side divisible by 4, got {height}x{width}")
    return height // 4


def study_encoder(shape: tuple[int, int, int], latent: int = 1000) -> nn.Sequential:
    """The Baseline's encoder: two conv stages pooled to H/2 and H/4, then a linear bottleneck."""
    channels, height, _ = shape
    grid = latent_grid(shape)
    return nn.Sequential(
        convblock(channels, 12),
        downsamp(12, height // 2),
        convblock(12, 24),
        downsamp(24, grid),
        nn.Flatten(),
        nn.Linear(24 * grid * grid, latent),
    )


def study_decoder(shape: tuple[int, int, int], latent: int = 1000) -> nn.Sequential:
    """The Baseline's decoder: linear to a 24 x H/4 x H/4 map, two upsample blocks, clamp."""
    grid = latent_grid(shape)
    return nn.Sequential(
        nn.Linear(latent, 24 * grid * grid),
        Unflatten(24, grid),
        Upsample(24, 12),
        Upsample(12, shape[0]),
        Clamp01(),
    )


class Autoencoder(nn.Module):
    """ImageNet normalisation of the [0, 1] input, an encoder, a decoder: the study's model layout.

    Encoder and decoder are named submodules so techniques can replace or adjust parts of them.
    """

    def __init__(self, channels: int, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.normalize = ImageNetNormalize(channels)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.normalize(x)))


def baseline_autoencoder(shape: tuple[int, int, int], latent: int = 1000) -> Autoencoder:
    """The study's Baseline for images of ``shape`` (C, H, W), with a ``latent``-d bottleneck.

    For a 3x32x32 input: two conv stages that pool to 16x16 and 8x8, a 1000-d linear bottleneck,
    and a decoder of two nearest-neighbour upsample blocks, clamped to [0, 1]: 3,080,629
    parameters. Other image sizes scale the pooled grids with the side (H/2, H/4), so the same
    design serves 1x28x28.
    """
    return Autoencoder(shape[0], study_encoder(shape, latent), study_decoder(shape, latent))
