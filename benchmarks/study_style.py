"""The study's way of feeding images: a torchvision Dataset of PIL images, ToTensor, a DataLoader."""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import VisionDataset


class UInt8Images(VisionDataset):
    """uint8 (N, C, H, W) images served one PIL image at a time, as torchvision's CIFAR10 and MNIST do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Callable | None = transforms.ToTensor()):
        super().__init__(root=None, transform=transform)
        # Kept as height x width x channels numpy rows, the layout PIL reads without a copy.
        pixels = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.pixels[index])
        return (self.transform(image) if self.transform else image), self.labels[index]
