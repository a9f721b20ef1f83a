"""Stripes: generated 1x16x16 grey images of four stripe patterns, a dataset that needs no files."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from aeframe import DatasetPlugin, ImageData, Param, Split

SIDE = 16
CLASSES = ("horizontal", "vertical", "diagonal", "checkerboard")


def _patterns(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images in [0, 1], (n, 1, SIDE, SIDE): a sine grating per class, random period, phase and contrast."""
    n = labels.shape[0]
    period = 3.0 + 4.0 * torch.rand(n, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    contrast = 0.3 + 0.2 * torch.rand(n, 1, 1, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(SIDE, dtype=torch.float32), torch.arange(SIDE, dtype=torch.float32),
                            indexing="ij")
    along = torch.stack([ys, xs, (xs + ys) / math.sqrt(2), xs])[labels]
    wave = torch.sin(2 * math.pi * along / period + phase)
    # The checkerboard multiplies a vertical grating by a horizontal one.
    checker = labels == CLASSES.index("checkerboard")
    wave[checker] *= torch.sin(2 * math.pi * ys / period[checker] + phase[checker])
    noise = 0.03 * torch.randn(n, SIDE, SIDE, generator=gen)
    return (0.5 + contrast * wave + noise).clamp(0, 1).unsqueeze(1)


def generate(count: int, seed: int, split: str) -> Split:
    """``count`` balanced, shuffled images of one split; train and test draw from different streams."""
    gen = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    labels = (torch.arange(count) % len(CLASSES))[torch.randperm(count, generator=gen)]
    images = _patterns(labels, gen).mul(255).round().to(torch.uint8)
    return Split(images, labels)


class Stripes(DatasetPlugin):
    name = "stripes"
    title = "Stripes"
    description = "generated 1x16x16 grey stripe patterns in 4 classes (no download)"
    params = (
        Param("train", int, 2000, "number of training images"),
        Param("test", int, 400, "number of test images"),
        Param("seed", int, 0, "which instance of the dataset to generate"),
    )

    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return (1, SIDE, SIDE)

    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        return None  # generated: always here

    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        return ImageData(
            train=generate(params["train"], params["seed"], "train"),
            test=generate(params["test"], params["seed"], "test"),
            classes=list(CLASSES),
        )
