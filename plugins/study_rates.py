"""The study's second-run learning rates (seed-protocol.md section 4), per technique and dataset.

The study ran MNIST and CIFAR-10 only. Datasets of the MNIST family (``mnist``, ``fashion-mnist``:
28x28 grey, resized the same way) take the MNIST rate; every other dataset takes the CIFAR-10 rate.
"""
from __future__ import annotations

MNIST_FAMILY = ("mnist", "fashion-mnist")

# technique -> (MNIST rate, CIFAR-10 rate) for the 10-epoch second one-cycle run.
SECOND_RUN = {
    "baseline": (1e-3, 1e-3),
    "pixel-shuffle": (1e-3, 1e-3),
    "progressive-resizing": (1.74e-4, 1e-3),
    "feature-loss": (1e-4, 1e-3),
    "resnet": (1e-4, 1e-3),
}

# The pretrained encoder's second run: slice(1e-6, 1e-2) over 10 parameter groups, on both datasets.
DISCRIMINATIVE = (1e-6, 1e-2)


def second_run_lr(technique: str, dataset: str) -> float:
    mnist, cifar = SECOND_RUN[technique]
    return mnist if dataset in MNIST_FAMILY else cifar


def geometric(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` rates from ``low`` to ``high`` spaced geometrically, as fastai spreads ``slice(low, high)``."""
    if count == 1:
        return (high,)
    ratio = (high / low) ** (1 / (count - 1))
    return tuple(low * ratio**i for i in range(count))
