"""Model wrappers that corrupt the training inputs, for the Denoising and Masked Patches techniques.

The wrapped model sees corrupted inputs in training mode only: the loss still compares its output
with the clean target, and evaluation (eval mode) sees clean images. Every random number is drawn
by torch on the input's device from its global generator, which aeframe seeds per cell, so a cell
repeats exactly and its step can be captured in a CUDA graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CorruptedInput(nn.Module):
    """The wrapped model, fed ``corrupt(x)`` in training mode and ``x`` otherwise."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.corrupt(x) if self.training else x)


class GaussianNoise(CorruptedInput):
    """Adds Gaussian noise of standard deviation ``noise`` to the input, clamped back into [0, 1]."""

    def __init__(self, model: nn.Module, noise: float):
        super().__init__(model)
        self.noise = noise

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.noise * torch.randn_like(x)).clamp(0, 1)


class PatchMask(CorruptedInput):
    """Sets ``floor(ratio * patches)`` of each image's ``patch`` x ``patch`` patches, chosen at random, to 0."""

    def __init__(self, model: nn.Module, ratio: float, patch: int):
        super().__init__(model)
        self.ratio, self.patch = ratio, patch

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        # Ceiling division: a phase trained smaller than the patch grid (progressive resizing) still
        # gets a grid, its last row and column of patches cut by the image's edge.
        rows, cols = -(-height // self.patch), -(-width // self.patch)
        hidden = int(self.ratio * rows * cols)
        if hidden == 0:
            return x
        # An exact share per image, as MAE samples its patches without replacement: the patches with
        # the lowest random scores are hidden.
        order = torch.rand(n, rows * cols, device=x.device).argsort(dim=1)
        keep = torch.ones(n, rows * cols, device=x.device, dtype=x.dtype).scatter_(1, order[:, :hidden], 0)
        keep = F.interpolate(keep.view(n, 1, rows, cols), scale_factor=self.patch, mode="nearest")
        return x * keep[..., :height, :width]
