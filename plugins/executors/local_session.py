"""The ``local`` executor: the cells one after another in this process, on one device; or, with
``--cells-per-device N`` (or ``auto``), each row's first seed alone and the other cells N at a time in
worker processes."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from aeframe.executors import (CellPool, DatasetGroup, ExecutorSession, ExecutorSettings, RunProgress, Work,
                               cells_per_device_auto, resolve_device)

T = TypeVar("T")


class LocalSession(ExecutorSession):
    """Trains on ``settings.device`` in this process, with a progress bar per cell."""

    def __init__(self, settings: ExecutorSettings):
        self.device = resolve_device(settings.device)
        self.device_type = self.device.type
        self.packing = settings.cells_per_device
        self.say = settings.say

    def on_cell_device(self, fn: Callable) -> T:
        return fn(self.device)

    def run(self, groups: Sequence, work: Work) -> Iterator:
        if self.packing == 1:
            return work.train_here(groups, self.device)
        return self._packed(groups, work)

    def _packed(self, groups: Sequence[DatasetGroup], work: Work) -> Iterator:
        # Each row's first cell trains with the device to itself: its times are the ones the table shows.
        alone, rest = [], []
        for group in groups:
            seen, first, others = set(), [], []
            for spec in group.cells:
                (others if spec.config.label in seen else first).append(spec)
                seen.add(spec.config.label)
            alone.append(replace(group, cells=first))
            rest.append(replace(group, cells=others))
        trained_alone = []
        for record in work.train_here(alone, self.device):
            trained_alone.append(record)
            yield record
        total = sum(len(group.cells) for group in rest)
        if not total:
            return
        packing = self.packing
        if packing == "auto":
            packing, why = cells_per_device_auto(trained_alone, self.device)
            self.say(f"--cells-per-device auto: {packing} at a time ({why})")
        if packing == 1:
            yield from work.train_here(rest, self.device)
            return
        # The alone cells' thread count: on a CPU it decides the order of float sums, so the numbers.
        pool = CellPool(packing, self.device, torch.get_num_threads(), work.data_dir, work.cache_dir)
        progress = RunProgress(total, packing)
        try:
            for record in pool.train(rest):
                record.stats.packed = packing
                progress.finished(record, record.config.label)
                yield record
        finally:
            pool.close()
