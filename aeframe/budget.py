"""Training budgets: epochs and/or seconds of device-synchronised training time.

Progress through a budget is a number in [0, 1] that schedules are written against. Under a time
budget the clock is read (with a device synchronisation) often enough that a cell stops within one
step of the limit, but not at every step on a GPU, where each read stalls the queue of kernels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aeframe.durations import describe_budget

if TYPE_CHECKING:
    import torch


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


class Clock:
    """A stopwatch of training time that waits for the device before every reading."""

    def __init__(self, device: torch.device):
        if device.type == "cuda":
            import torch

            self._sync = lambda: torch.cuda.synchronize(device)
        else:
            self._sync = lambda: None
        self._spent = 0.0
        self._since: float | None = None

    def start(self) -> None:
        self._sync()
        self._since = time.perf_counter()

    def stop(self) -> None:
        self._spent = self.read()
        self._since = None

    def read(self) -> float:
        if self._since is None:
            return self._spent
        self._sync()
        return self._spent + time.perf_counter() - self._since


class BudgetTracker:
    """Answers "how far along are we?" and "must we stop?" after each step."""

    # On a GPU, read the clock about this often (seconds) while far from the limit.
    GPU_READ_INTERVAL = 0.25

    def __init__(self, budget: Budget, steps_per_epoch: int, clock: Clock, every_step: bool):
        self.budget = budget
        self.total_steps = budget.epochs * steps_per_epoch if budget.epochs is not None else None
        self.clock = clock
        self.every_step = every_step
        self._read_at_step = 0
        self._read_seconds = 0.0
        self._step_seconds = 0.0
        self.out_of_time = False

    def _estimated_seconds(self, step: int) -> float:
        return self._read_seconds + (step - self._read_at_step) * self._step_seconds

    def progress(self, step: int) -> float:
        """Share of the budget used before ``step`` runs, in [0, 1]."""
        done = 0.0
        if self.total_steps is not None:
            done = step / self.total_steps
        if self.budget.seconds is not None:
            done = max(done, self._estimated_seconds(step) / self.budget.seconds)
        return min(done, 1.0)

    def left(self, step: int) -> str:
        """What remains of the budget, for people: seconds under a time budget, else steps."""
        if self.budget.seconds is not None:
            return f"{max(self.budget.seconds - self._estimated_seconds(step), 0.0):.0f}s"
        return f"{self.total_steps - step} steps"

    def exhausted(self, step: int) -> bool:
        """Called after each step: True when no further step may start."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        if self.budget.seconds is None:
            return False
        if self.every_step or self._due(step):
            self._read(step)
        return self.out_of_time

    def _due(self, step: int) -> bool:
        left = self.budget.seconds - self._estimated_seconds(step)
        if self._step_seconds == 0.0 or left < 2 * self._step_seconds:
            return True
        return self._estimated_seconds(step) - self._read_seconds >= self.GPU_READ_INTERVAL

    def _read(self, step: int) -> None:
        seconds = self.clock.read()
        if step > self._read_at_step:
            self._step_seconds = (seconds - self._read_seconds) / (step - self._read_at_step)
        self._read_at_step, self._read_seconds = step, seconds
        self.out_of_time = seconds >= self.budget.seconds

    def pause(self, step: int) -> None:
        """Re-anchor the estimate after the clock was stopped (evaluation between epochs)."""
        self._read_at_step, self._read_seconds = step, self.clock.read()
