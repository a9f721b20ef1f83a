"""A dataset in memory on the training device: batches by indexing with a permutation, views resized once.

No DataLoader, no workers, no per-image decoding, no host-to-device copy per step: the whole split
moves to the device once as uint8, and each batch is a gather of rows from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch.nn import functional as F

from aeframe.dataset import ImageData, Split

_RESIZE_CHUNK = 4096


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of uint8 images (no antialiasing, half-pixel centres), rounded back to uint8.

    Not fastai v1's affine-grid resample, which differs on Fashion-MNIST's 28 -> 32 by MSE 3.3e-3
    (docs/protocol.md, "Resampling is not fastai v1's")."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


class DeviceSplit:
    """One split on the training device, with square views at other sizes made once and kept."""

    def __init__(self, split: Split, device: torch.device):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.device = device
        self._views: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def side(self) -> int:
        return self.images.shape[-1]

    def view(self, size: int | None) -> torch.Tensor:
        if size is None or size == self.side:
            return self.images
        if size not in self._views:
            self._views[size] = resize_uint8(self.images, size)
        return self._views[size]

    def batches(self, batch_size: int, size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image in order, as float [0, 1] batches with their labels (evaluation)."""
        images = self.view(size)
        for start in range(0, len(self), batch_size):
            yield to_unit(images[start : start + batch_size]), self.labels[start : start + batch_size]


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def epoch_order(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A fresh random permutation, cut to whole batches: shape (steps, batch_size)."""
    steps = n // batch_size
    return torch.randperm(n, generator=generator, device=device)[: steps * batch_size].view(steps, batch_size)


@dataclass
class CellData:
    """A dataset's splits on the training device, shared by all cells of that dataset."""

    train: DeviceSplit
    test: DeviceSplit
    num_classes: int


def on_device(data: ImageData, device: torch.device) -> CellData:
    """A loaded dataset's splits moved to the training device (no copy when that is the CPU)."""
    return CellData(train=DeviceSplit(data.train, device), test=DeviceSplit(data.test, device), num_classes=len(data.classes))
