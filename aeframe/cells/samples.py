"""A few test images and a cell's reconstructions of them, kept for the report's picture grids.

Every cell of a dataset picks the same images (the first test image of each class, in class
order), so the grid's rows can be compared column by column. Torch is imported inside the functions
that compute on images, so that the store can hold and the report can read records without it;
:func:`aeframe.training.evaluate.capture_samples` makes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SAMPLE_COUNT = 10


def sample_indices(labels: torch.Tensor, count: int = SAMPLE_COUNT) -> list[int]:
    """Test-split positions of the sample images: one per class in class order, round after round.

    With fewer classes than ``count`` the second image of each class follows, and so on; with
    fewer images than ``count``, every image.
    """
    import torch

    labels = labels.cpu()
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in torch.unique(labels).tolist()]
    picked: list[int] = []
    for depth in range(max((len(c) for c in by_class), default=0)):
        for positions in by_class:
            if depth < len(positions) and len(picked) < count:
                picked.append(positions[depth])
    return picked


@dataclass
class Samples:
    """Sample images and one cell's reconstructions of them, both uint8 (N, C, H, W) on the CPU."""

    indices: list[int]
    originals: torch.Tensor
    reconstructions: torch.Tensor

    def __post_init__(self) -> None:
        import torch

        if self.originals.shape != self.reconstructions.shape or self.originals.dtype != torch.uint8:
            raise ValueError("originals and reconstructions must be uint8 tensors of one shape")
        if len(self.indices) != self.originals.shape[0]:
            raise ValueError("one index per sample image is needed")
