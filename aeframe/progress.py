"""Progress on stderr, so that stdout carries nothing but the result tables."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from aeframe.durations import format_duration
from aeframe.errors import first_line
from aeframe.record import DONE, CellRecord


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

    def finish(self, record: CellRecord) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
        stats = record.stats
        if record.status == DONE:
            mse = record.metrics.get("mse")
            shown = f" mse {mse:.6f}" if mse is not None else ""
            detail = f"{stats['epochs']:.2f} epochs in {format_duration(stats['train_seconds'])}{shown}"
        else:
            detail = first_line(record.error)
        self.stream.write(f"{self.title}: {record.status} {detail}\n")
        self.stream.flush()


def say(message: str, stream: TextIO | None = None) -> None:
    """One line of information for the user, on stderr."""
    stream = stream or sys.stderr
    stream.write(f"aeframe: {message}\n")
    stream.flush()
