"""The limit on a cell's untimed preparation (:mod:`aeframe.speed.preparation`), and its progress lines.

A preparation rehearses a fixed number of training steps, a few dozen (the layout and step-mode
measurements, the warm-up), whatever the budget. A technique whose step takes 30 s would spend a
quarter of an hour there under a 5-second budget, without a word. So (docs/results.md, "The
preparation limit"):

- once the preparation has run :data:`QUIET_SECONDS`, it writes a line at each new stage and at
  least every :data:`LINE_SECONDS`, naming the stage and the time so far;
- under a time budget it may last at most ``max(FLOOR_SECONDS, BUDGET_MULTIPLE x the budget)``;
  past that the cell fails with one line naming the technique, the stage and what to do, and the
  run goes on with the next cell. An epoch budget sets no limit: how long its training will be is
  not known before steps are timed, and the preparation's fixed few dozen steps are small against
  even one epoch of all but the tiniest datasets. Its lines still come.
- :data:`LIMIT_ENV` (a duration, or ``none``) replaces the computed limit for every cell, epoch
  budgets included; it is read where the cell trains.

The check is cooperative: between stages, after each rehearsal is set up and after every rehearsed
step. A single step that never returns cannot be interrupted in the process that runs it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from aeframe.cells.durations import format_duration, parse_duration
from aeframe.errors import AeframeError

# A preparation rehearses a few dozen steps: past 10x the budget, each step takes over a twentieth of
# the budget, and training would get only a handful. The floor keeps short budgets (smoke runs) on a
# busy CPU clear of it: the Baseline's preparation took 81 s on a 2-core machine shared four ways.
FLOOR_SECONDS = 120.0
BUDGET_MULTIPLE = 10.0
LIMIT_ENV = "AEFRAME_PREPARATION_LIMIT"
NO_LIMIT = "none"
# A preparation shorter than this says nothing: most take a few seconds, and a line each would be noise.
QUIET_SECONDS = 10.0
LINE_SECONDS = 30.0

# What to do, by stage, besides allowing more time.
LAYOUT_ADVICE = "--channels-last or --no-channels-last skips this measurement"
STEP_MODE_ADVICE = "--cuda-graphs or --no-cuda-graphs skips the step mode's measurement"


class PreparationTooLong(AeframeError):
    """A cell's preparation passed its limit; the message names the technique, the stage and what to do."""


@dataclass(frozen=True)
class Limit:
    """How long a cell's preparation may last (None: no limit), and where that number comes from."""

    seconds: float | None
    source: str = ""
    raise_with: str = f"a larger --time-budget or {LIMIT_ENV}"  # how a user allows more


def preparation_limit(budget_seconds: float | None, env: Mapping[str, str] | None = None) -> Limit:
    """The limit of a cell whose time budget is ``budget_seconds`` (None: epochs only); see the module."""
    env = os.environ if env is None else env
    given = env.get(LIMIT_ENV, "").strip()
    if given:
        return _from_env(given)
    if budget_seconds is None:
        return Limit(None)
    seconds = max(FLOOR_SECONDS, BUDGET_MULTIPLE * budget_seconds)
    return Limit(seconds, f"{BUDGET_MULTIPLE:g}x the {format_duration(budget_seconds)} time budget, at least "
                          f"{format_duration(FLOOR_SECONDS)}")


def _from_env(given: str) -> Limit:
    if given.lower() == NO_LIMIT:
        return Limit(None)
    try:
        seconds = parse_duration(given)
    except ValueError:
        raise AeframeError(f"{LIMIT_ENV}={given!r} is not a duration; set it to e.g. 90s, 10m or {NO_LIMIT}") from None
    return Limit(seconds, f"{LIMIT_ENV}={given}", f"a larger {LIMIT_ENV}")


class PreparationWatch:
    """One cell's preparation as it goes: its stage, its lines (through ``say``) and its limit.

    ``label`` names the cell's technique in the failure; ``clock`` is replaceable for tests."""

    def __init__(self, label: str, limit: Limit, say: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.limit, self.say, self.clock = label, limit, say, clock
        self.started = clock()
        self.stage, self.advice = "starting", ""
        self.steps = 0
        self._stage_shown = False
        self._last_line: float | None = None
        # Once passed, every later check raises the same message, even after code that swallowed the
        # first one (a profiler's try/except): the stage named is where the limit was passed.
        self._passed: str | None = None

    def enter(self, stage: str, advice: str = "") -> None:
        """The preparation starts ``stage`` (``"measuring the memory layout"``); ``advice``: how to skip it."""
        self.stage, self.advice, self._stage_shown = stage, advice, False
        self.check()

    def step(self) -> None:
        """After a rehearsed step, inside a timed block: the limit only (a line would add to the block's time)."""
        self.steps += 1
        self._enforce(self.clock() - self.started)

    def check(self) -> None:
        """Between steps' timed blocks: the limit, and a line when one is due."""
        now = self.clock()
        elapsed = now - self.started
        self._enforce(elapsed)
        if self.say is None or elapsed < QUIET_SECONDS:
            return
        if self._stage_shown and self._last_line is not None and now - self._last_line < LINE_SECONDS:
            return
        self._last_line, self._stage_shown = now, True
        limit = f", limit {format_duration(self.limit.seconds)}" if self.limit.seconds is not None else ""
        self.say(f"preparing off the clock: {self.stage} ({format_duration(elapsed)} so far{limit})")

    def _enforce(self, elapsed: float) -> None:
        if self._passed is None and self.limit.seconds is not None and elapsed > self.limit.seconds:
            self._passed = self._message(elapsed)
        if self._passed is not None:
            raise PreparationTooLong(self._passed)

    def _message(self, elapsed: float) -> str:
        advice = ", or ".join(a for a in (self.advice, f"{self.limit.raise_with} allows more") if a)
        return (f"technique {self.label!r} passed its preparation limit of {format_duration(self.limit.seconds or 0)} "
                f"({self.limit.source}) while {self.stage}, after {self.steps} rehearsed training "
                f"step{'s' if self.steps != 1 else ''} in "
                f"{format_duration(elapsed)} off the clock; {advice}")


_current: ContextVar[PreparationWatch | None] = ContextVar("aeframe_preparation_watch", default=None)


@contextmanager
def watching(watch: PreparationWatch | None) -> Iterator[None]:
    """Within the block, rehearsals report their steps to ``watch`` (see :func:`rehearsed_step`)."""
    token = _current.set(watch)
    try:
        yield
    finally:
        _current.reset(token)


def rehearsed_step() -> None:
    """A rehearsal took a step: the limit of the preparation under way, if any (see :meth:`PreparationWatch.step`)."""
    watch = _current.get()
    if watch is not None:
        watch.step()


def enter(stage: str, advice: str = "") -> None:
    """The preparation under way, if any, starts ``stage`` (see :meth:`PreparationWatch.enter`)."""
    watch = _current.get()
    if watch is not None:
        watch.enter(stage, advice)


def checkpoint() -> None:
    """Between a rehearsal's timed blocks: the limit, and a progress line when due."""
    watch = _current.get()
    if watch is not None:
        watch.check()
