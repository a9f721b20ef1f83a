"""Progress on stderr, so that stdout carries nothing but the result tables."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from aeframe.cells.durations import format_duration
from aeframe.cells.record import DONE, CellRecord
from aeframe.errors import first_line


class CellProgress:
    """A one-line bar per cell: epoch, step, loss and the budget left.

    On a terminal the line is redrawn in place a few times a second; elsewhere (logs, CI, pipes)
    a line is written every few seconds, so logs stay short.
    """

    WIDTH = 24

    def __init__(self, title: str, stream: TextIO | None = None):
        self.title = title
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self._last = time.monotonic()
        self._drawn = False

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def update(self, *, epoch: int, step: int, loss: float, progress: float, left: str) -> None:
        self._last = time.monotonic()
        filled = int(self.WIDTH * progress)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"{self.title} |{bar}| {progress:4.0%} epoch {epoch} step {step} loss {loss:.5f} left {left}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A line about the cell outside its bar (its preparation's progress), after the cell's title."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        self.stream.write(f"{self.title}: {message}\n")
        self.stream.flush()

    def finish(self, record: CellRecord) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(f"{self.title}: {outcome(record)}\n")
        self.stream.flush()


def outcome(record: CellRecord) -> str:
    """``done 2.00 epochs in 4.1s mse 0.012345``, or the status and the first line of the error."""
    stats = record.stats
    if record.status == DONE:
        mse = record.metrics.get("mse")
        shown = f" mse {mse:.6f}" if mse is not None else ""
        return f"{record.status} {stats['epochs']:.2f} epochs in {format_duration(stats['train_seconds'])}{shown}"
    return f"{record.status} {first_line(record.error)}"


class RunProgress:
    """For executors that train cells side by side: a line per finished cell and the run's count.

    No bars: cells in flight elsewhere cannot redraw one line. After each cell comes the overall
    count (done, running, pending), the time elapsed and an estimate of the time left, from the
    rate at which cells have finished so far.
    """

    def __init__(self, total: int, slots: int, stream: TextIO | None = None):
        self.total = total
        self.slots = max(1, slots)  # how many cells can run at once
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def finished(self, record: CellRecord, title: str, where: str = "") -> None:
        """Write the line of a cell that ended, then the run's count, elapsed time and estimate of the time left.

        Args:
            record: The cell's record; its outcome (done with its epochs, time and mse, or the status and
                the first line of the error) is shown.
            title: How the line names the cell (``Baseline on shapes (seed 0)``).
            where: Where it trained (a node and device), shown in brackets after the outcome; empty: not shown.
        """
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        running = min(left, self.slots)
        estimate = f", about {format_duration(elapsed / self.done * left)} left" if left else ""
        place = f" [{where}]" if where else ""
        self.stream.write(f"[{self.done}/{self.total}] {title}: {outcome(record)}{place}\n")
        self.stream.write(f"aeframe: {self.done} done, {running} running, {left - running} pending; "
                          f"{format_duration(elapsed)} elapsed{estimate}\n")
        self.stream.flush()
