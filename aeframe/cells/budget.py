"""A cell's training budget: epochs and/or seconds of device-synchronised training time.

How a running cell spends it (the clock, progress in [0, 1], when to stop) is
:mod:`aeframe.training.clock`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass

from aeframe.cells.durations import describe_budget


@dataclass(frozen=True)
class Budget:
    """At most ``epochs`` epochs and at most ``seconds`` of training; whichever ends first."""

    epochs: int | None = 15
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.epochs is None and self.seconds is None:
            raise ValueError("a budget needs epochs, seconds or both")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError("seconds must be positive")

    def describe(self) -> str:
        """``"15 epochs"``, ``"60 s"`` or ``"15 epochs or 60 s"``."""
        return describe_budget(self.epochs, self.seconds)
