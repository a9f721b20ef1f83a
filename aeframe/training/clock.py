"""The training clock and the budget tracker: how far through its budget a cell is, and when it stops.

Progress through a budget is a number in [0, 1] that schedules are written against. Under a time
budget the clock is read (with a device synchronisation) often enough that a cell stops within one
step of the limit, but not at every step on a GPU, where each read stalls the queue of kernels.
"""
from __future__ import annotations

import time

import torch

from aeframe.cells.budget import Budget
from aeframe.speed.contention import CpuShareMeter
from aeframe.speed.step import synchronizer


class Clock:
    """A stopwatch of training time that waits for the device before every reading.

    While it runs it also measures how much of the CPU the process got (``cpu``, see
    :mod:`aeframe.speed.contention`): only the training clock's time counts, not evaluation or range tests.
    """

    def __init__(self, device: torch.device):
        self._sync = synchronizer(device)
        self._spent = 0.0
        self._since: float | None = None
        self.cpu = CpuShareMeter(torch.get_num_threads())

    def start(self) -> None:
        self._sync()
        self.cpu.start()
        self._since = time.perf_counter()

    def stop(self) -> None:
        self._spent = self.read()
        self._since = None
        self.cpu.stop()

    def read(self) -> float:
        if self._since is None:
            return self._spent
        self._sync()
        return self._spent + time.perf_counter() - self._since


class BudgetTracker:
    """Answers "how far along are we?" and "must we stop?" after each step.

    It reads the clock after every step on a CPU, and on a GPU about every ``GPU_READ_INTERVAL``
    seconds (more often near a time limit), whatever the budget: those reads are the moments the
    device is synchronised anyway, so the training loop checks its loss for NaN/inf there
    (``synchronised``) without a synchronisation of its own.
    """

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
        self.synchronised = False  # whether the last exhausted() read the clock

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
        self.synchronised = False
        if self.total_steps is not None and step >= self.total_steps:
            return True
        if self.every_step or self._due(step):
            self._read(step)
        return self.out_of_time

    def _due(self, step: int) -> bool:
        if self._step_seconds == 0.0:
            return True
        if self.budget.seconds is not None and self.budget.seconds - self._estimated_seconds(step) < 2 * self._step_seconds:
            return True
        return self._estimated_seconds(step) - self._read_seconds >= self.GPU_READ_INTERVAL

    def _read(self, step: int) -> None:
        seconds = self.clock.read()
        self.synchronised = True
        if step > self._read_at_step:
            self._step_seconds = (seconds - self._read_seconds) / (step - self._read_at_step)
        self._read_at_step, self._read_seconds = step, seconds
        self.out_of_time = self.budget.seconds is not None and seconds >= self.budget.seconds

    def pause(self, step: int) -> None:
        """Re-anchor the estimate after the clock was stopped (evaluation between epochs)."""
        self._read_at_step, self._read_seconds = step, self.clock.read()
