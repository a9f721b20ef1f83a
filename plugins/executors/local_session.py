"""The ``local`` executor: the cells one after another in this process, on one device."""
from __future__ import annotations

from typing import Callable, Iterator, Sequence, TypeVar

from aeframe.executors import ExecutorSession, ExecutorSettings, Work, resolve_device

T = TypeVar("T")


class LocalSession(ExecutorSession):
    """Trains on ``settings.device`` in this process, with a progress bar per cell."""

    def __init__(self, settings: ExecutorSettings):
        self.device = resolve_device(settings.device)
        self.device_type = self.device.type

    def on_cell_device(self, fn: Callable) -> T:
        return fn(self.device)

    def run(self, groups: Sequence, work: Work) -> Iterator:
        return work.train_here(groups, self.device)
