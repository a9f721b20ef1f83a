"""A dataset in memory on the training device: batches by indexing with a permutation, views resized once.

No DataLoader, no workers, no per-image decoding, no host-to-device copy per step: the whole split
moves to the device once as uint8, and each batch is a gather of rows from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from aeframe.contract.dataset import ImageData, Split
from aeframe.contract.resample import HALF_PIXEL, resize_uint8

#: Test images per evaluation batch: evaluation, its rehearsal before the clock and the samples read this many.
EVAL_BATCH = 500


class DeviceSplit:
    """One split on the training device, with square views at other sizes made once and kept.

    ``resample`` is how those views are made (:mod:`aeframe.contract.resample`): the dataset's own choice."""

    def __init__(self, split: Split, device: torch.device, resample: str = HALF_PIXEL):
        self.images = split.images.to(device)
        self.resample = resample
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
            self._views[size] = resize_uint8(self.images, size, self.resample)
        return self._views[size]

    def batches(self, batch_size: int, size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image in order, as float [0, 1] batches with their labels (evaluation)."""
        images = self.view(size)
        for start in range(0, len(self), batch_size):
            yield to_unit(images[start : start + batch_size]), self.labels[start : start + batch_size]


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float in [0, 1], as models, losses and metrics take them.

    Args:
        images: uint8 images, (N, C, H, W), on any device.

    Returns:
        A new float32 tensor of the same shape and device: each value divided by 255.
    """
    return images.float().div_(255)


def epoch_order(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A fresh random permutation, cut to whole batches: shape (steps, batch_size).

    Args:
        n: How many images the split has.
        batch_size: Images per batch; the last partial batch is dropped.
        generator: The generator the permutation is drawn from, on ``device``.
        device: Where the permutation is made (the device the split is on).

    Returns:
        Image indices, int64 (n // batch_size, batch_size): one row per training step of the epoch.
    """
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
    return CellData(train=DeviceSplit(data.train, device, data.resample), test=DeviceSplit(data.test, device, data.resample),
                    num_classes=len(data.classes))
