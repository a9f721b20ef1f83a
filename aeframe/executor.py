"""Executors take datasets' pending cells with the data they train on, and hand back one record per cell
as each one ends.

The driver (:mod:`aeframe.bench`) loads every dataset once, fingerprints it and gives its cells their
final keys (:mod:`aeframe.groups`); an executor only trains. ``LocalExecutor`` runs the cells one
after another in this process on one device.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from aeframe.cell import run_cell
from aeframe.data import on_device
from aeframe.groups import DatasetGroup
from aeframe.loading import Workspace
from aeframe.metric import Metric
from aeframe.metric_set import MetricSet
from aeframe.progress import CellProgress
from aeframe.record import CellRecord


class LocalExecutor:
    """Runs cells sequentially in this process on ``device``."""

    def __init__(self, device: torch.device, workspace: Workspace, metrics: Sequence[Metric], say: Callable[[str], None]):
        self.device = device
        self.workspace = workspace
        # One set for the whole run: each metric is prepared once per dataset, not once per cell.
        self.metrics = MetricSet(metrics)
        self.say = say

    def run(self, groups: Sequence[DatasetGroup]) -> Iterator[CellRecord]:
        """Train every group's cells on that group's data, dataset after dataset."""
        total = sum(len(group.cells) for group in groups)
        position = 0
        for group in groups:
            # The same tensors the workspace hands to metrics and techniques that ask for this dataset.
            data = on_device(group.data, self.device)
            for cell in group.cells:
                position += 1
                title = f"[{position}/{total}] {cell.composition.label} on {group.dataset.label} (seed {cell.seed})"
                progress = CellProgress(title)
                record = run_cell(cell, data, self.metrics, self.device, self.workspace, progress)
                progress.finish(record)
                yield record
            del data
