"""Does a schedule cover the whole budget, whether the budget is epochs or seconds?

The training loop asks the schedule where it is at each step's progress; here that loop's budget
tracker is driven by a simulated clock, so both kinds of budget are walked step by step in
microseconds, and every phase must be entered in order, with rates that make sense, up to the end.
"""
from __future__ import annotations

import math

from aeframe.cells.budget import Budget
from aeframe.contract.schedule import Schedule
from aeframe.training.clock import BudgetTracker

STEPS_PER_EPOCH = 200
SIMULATED = (Budget(epochs=3), Budget(epochs=None, seconds=60.0), Budget(epochs=3, seconds=45.0))
STEP_SECONDS = 0.1


class _SimulatedClock:
    """Reads ``STEP_SECONDS`` per step taken, so a time budget runs out after a known number of steps."""

    def __init__(self) -> None:
        self.steps = 0

    def read(self) -> float:
        return self.steps * STEP_SECONDS


def schedule_problems(schedule: Schedule) -> list[str]:
    problems = _static_problems(schedule)
    if problems:
        return problems
    for budget in SIMULATED:
        problems.extend(f"under a budget of {budget.describe()}: {p}" for p in _walk(schedule, budget))
    return problems[:1] + ([f"and {len(problems) - 1} more"] if len(problems) > 1 else [])


def _static_problems(schedule: Schedule) -> list[str]:
    phases = schedule.phases
    if not phases:
        return ["the schedule has no phases"]
    if any(not (p.fraction > 0) for p in phases):
        return ["every phase needs a positive fraction of the budget"]
    total = sum(p.fraction for p in phases)
    if abs(total - 1.0) > 1e-6:
        return [f"the phases' fractions sum to {total:g}, not 1 (a wrapper changed them?)"]
    if schedule.batch_size < 1:
        return [f"batch_size is {schedule.batch_size}"]
    return []


def _walk(schedule: Schedule, budget: Budget) -> list[str]:
    clock = _SimulatedClock()
    tracker = BudgetTracker(budget, STEPS_PER_EPOCH, clock, every_step=True)  # type: ignore[arg-type]
    visited: list[int] = []
    last = (0, 0.0)
    step = 0
    while True:
        progress = tracker.progress(step)
        index, q = schedule.locate(progress)
        if not (0 <= index < len(schedule.phases)) or not (0.0 <= q <= 1.0):
            return [f"locate({progress:.3f}) gave phase {index}, progress {q}"]
        if (index, q) < last:
            return [f"locate went back from phase {last[0]} at {last[1]:.3f} to phase {index} at {q:.3f}"]
        last = (index, q)
        if not visited or visited[-1] != index:
            visited.append(index)
        problem = _rate_problem(schedule, index, q)
        if problem:
            return [problem]
        step += 1
        clock.steps = step
        if tracker.exhausted(step):
            break
    if visited != list(range(len(schedule.phases))):
        return [f"the phases were entered in the order {visited}, not each once in order"]
    if last[1] < 0.99:
        return [f"training stopped at {last[1]:.0%} of the last phase"]
    return []


def _rate_problem(schedule: Schedule, index: int, q: float) -> str | None:
    phase = schedule.phases[index]
    for max_lr in phase.lrs():
        lr = schedule.lr_at(q, max_lr)
        if not (math.isfinite(lr) and lr >= 0):
            return f"phase {phase.name or index}: learning rate {lr} at progress {q:.3f}"
    if schedule.beta1_at is not None:
        beta1 = schedule.beta1_at(q)
        if not (0.0 <= beta1 < 1.0):
            return f"phase {phase.name or index}: beta1 {beta1} at progress {q:.3f} is outside [0, 1)"
    return None
