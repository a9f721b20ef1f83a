"""The study's second-run learning rates (seed-protocol.md section 4), as the peak rates techniques declare.

The study ran MNIST and CIFAR-10 only. Datasets of the MNIST family (``mnist``, ``fashion-mnist``:
28x28 grey, resized the same way) take the MNIST rate; every other dataset takes the CIFAR-10 rate.
The table keeps every row of the study, but only the techniques whose rate differs from the study
schedule's own second-run rate (1e-3) declare theirs: Baseline and Pixel Shuffle declare nothing,
so they combine with any technique that does.
"""
from __future__ import annotations

from aeframe import PeakRate

MNIST_FAMILY = ("mnist", "fashion-mnist")

#: The name ``aeframe.study_schedule`` gives its second one-cycle run, the phase these rates are for.
SECOND_RUN = "run 2"


def study_rate(mnist: float, cifar10: float) -> PeakRate:
    """The peak rate the study chose on MNIST (for the MNIST family) and on CIFAR-10 (for the rest)."""
    return PeakRate(cifar10, {name: mnist for name in MNIST_FAMILY})


def geometric(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` rates from ``low`` to ``high`` spaced geometrically, as fastai spreads ``slice(low, high)``."""
    if count == 1:
        return (high,)
    ratio = (high / low) ** (1 / (count - 1))
    return tuple(low * ratio**i for i in range(count))


# Technique -> the peak rate of its 10-epoch second one-cycle run.
SECOND_RUN_RATES: dict[str, PeakRate] = {
    "baseline": study_rate(mnist=1e-3, cifar10=1e-3),
    "pixel-shuffle": study_rate(mnist=1e-3, cifar10=1e-3),
    "progressive-resizing": study_rate(mnist=1.74e-4, cifar10=1e-3),
    "feature-loss": study_rate(mnist=1e-4, cifar10=1e-3),
    "resnet": study_rate(mnist=1e-4, cifar10=1e-3),
    # slice(1e-6, 1e-2) over the pretrained encoder's 10 parameter groups, on both datasets.
    "pretrained-resnet": PeakRate(geometric(1e-6, 1e-2, 10)),
}


def declared_rates(technique: str) -> dict[str, PeakRate]:
    """What ``technique`` declares as its ``learning_rates``: the study's rate for its second run."""
    return {SECOND_RUN: SECOND_RUN_RATES[technique]}
