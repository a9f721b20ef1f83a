import pytest

from aeframe.cells.budget import Budget
from aeframe.training.clock import BudgetTracker


def test_budget_needs_a_limit_and_describes_itself():
    with pytest.raises(ValueError):
        Budget(epochs=None, seconds=None)
    assert Budget(epochs=1).describe() == "1 epoch"
    assert Budget(epochs=15, seconds=60).describe() == "15 epochs or 60 s"


class FakeClock:
    """Each step costs ``step`` seconds; reading it counts how often it was read."""

    def __init__(self, step: float):
        self.step, self.now, self.reads = step, 0.0, 0

    def read(self) -> float:
        self.reads += 1
        return self.now


def run(tracker: BudgetTracker, clock: FakeClock, max_steps: int = 10_000) -> int:
    step = 0
    while step < max_steps:
        clock.now += clock.step
        step += 1
        if tracker.exhausted(step):
            return step
    raise AssertionError("never stopped")


def test_epoch_budget_stops_at_exactly_its_steps_and_progress_is_linear():
    clock = FakeClock(0.01)
    tracker = BudgetTracker(Budget(epochs=3), steps_per_epoch=10, clock=clock, every_step=True)
    assert tracker.progress(0) == 0 and tracker.progress(15) == 0.5
    assert run(tracker, clock) == 30
    # No time limit, but on a CPU the clock is still read after each step but the epoch's last:
    # those reads are where the loop checks the loss for NaN.
    assert clock.reads == 29 and not tracker.out_of_time


def test_time_budget_stops_within_one_step_mid_epoch():
    clock = FakeClock(0.3)
    tracker = BudgetTracker(Budget(epochs=15, seconds=10), steps_per_epoch=100, clock=clock, every_step=True)
    steps = run(tracker, clock)
    assert steps == 34  # the first step that reaches 10 s: 34 * 0.3 = 10.2
    assert 10 <= clock.now < 10 + 0.3
    assert tracker.progress(steps) == 1.0


def test_gpu_mode_reads_the_clock_rarely_but_still_stops_within_one_step():
    clock = FakeClock(0.001)
    tracker = BudgetTracker(Budget(epochs=None, seconds=5), steps_per_epoch=10_000, clock=clock, every_step=False)
    steps = run(tracker, clock)
    assert 5 <= clock.now < 5 + 0.001 + 1e-9
    assert steps == 5000 or steps == 5001
    assert clock.reads < steps / 10


def test_gpu_mode_under_an_epoch_budget_still_synchronises_a_few_times_a_second():
    # Where the loop checks for NaN without a synchronisation of its own.
    clock = FakeClock(0.001)
    tracker = BudgetTracker(Budget(epochs=1), steps_per_epoch=2000, clock=clock, every_step=False)
    synchronised = []
    step = 0
    while True:
        clock.now += clock.step
        step += 1
        stop = tracker.exhausted(step)
        if tracker.synchronised:
            synchronised.append(step)
        if stop:
            break
    assert step == 2000
    # The first step, to learn how long steps take, then every 0.25 s (250 steps): not every step.
    assert synchronised[:3] == [1, 251, 501] and len(synchronised) == 8


def test_whichever_ends_first():
    clock = FakeClock(1.0)
    tracker = BudgetTracker(Budget(epochs=2, seconds=1000), steps_per_epoch=5, clock=clock, every_step=True)
    assert run(tracker, clock) == 10
    clock = FakeClock(1.0)
    tracker = BudgetTracker(Budget(epochs=2, seconds=3), steps_per_epoch=5, clock=clock, every_step=True)
    assert run(tracker, clock) == 3


def test_budget_left_for_people():
    clock = FakeClock(0.5)
    tracker = BudgetTracker(Budget(epochs=3), steps_per_epoch=10, clock=clock, every_step=True)
    assert tracker.left(4) == "26 steps"
    timed = BudgetTracker(Budget(epochs=3, seconds=10), steps_per_epoch=10, clock=clock, every_step=True)
    clock.now = 4.0
    timed.exhausted(8)
    assert timed.left(8) == "6s"
