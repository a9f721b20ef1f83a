"""Executors take planned cells and hand back one record per cell as each one ends.

``LocalExecutor`` runs them one after another in this process on one device, loading each dataset
once for all of its cells. A dataset that cannot be had becomes one "skipped" record saying why.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from itertools import groupby
from typing import Callable, Iterator, Sequence

import torch

from aeframe.cell import now, run_cell
from aeframe.data import on_device
from aeframe.dataset import DatasetUnavailable
from aeframe.loading import Workspace
from aeframe.metric import Metric
from aeframe.metric_set import MetricSet
from aeframe.plan import Cell
from aeframe.progress import CellProgress
from aeframe.record import SKIPPED, SKIPPED_DATASET, CellRecord


def skipped_record(cell: Cell, reason: str) -> CellRecord:
    """The record of a dataset that could not be loaded, standing for all of its cells."""
    # It stands for no technique and no seed in particular.
    config = replace(cell.config, kind=SKIPPED_DATASET, label=cell.dataset.label, techniques=[], seed=None,
                     reference=False, plugins={}, protocol=None)
    key = "skip-" + hashlib.sha256(cell.dataset.label.encode()).hexdigest()[:11]
    return CellRecord(key=key, config=config, status=SKIPPED, error=reason, started_at=now(), finished_at=now())


class LocalExecutor:
    """Runs cells sequentially in this process on ``device``."""

    def __init__(self, device: torch.device, workspace: Workspace, metrics: Sequence[Metric], say: Callable[[str], None]):
        self.device = device
        self.workspace = workspace
        # One set for the whole run: each metric is prepared once per dataset, not once per cell.
        self.metrics = MetricSet(metrics)
        self.say = say

    def run(self, cells: Sequence[Cell]) -> Iterator[CellRecord]:
        total = len(cells)
        position = 0
        for _, group in groupby(cells, key=lambda c: c.dataset.label):
            group = list(group)
            dataset = group[0].dataset
            try:
                # Through the workspace, so metrics and techniques that ask for this dataset get the
                # same tensors instead of reading the files a second time.
                data = on_device(self.workspace.load_dataset(dataset.label), self.device)
            except DatasetUnavailable as exc:
                position += len(group)
                self.say(f"skipping {dataset.label}: {exc}")
                yield skipped_record(group[0], str(exc))
                continue
            for cell in group:
                position += 1
                title = f"[{position}/{total}] {cell.composition.label} on {dataset.label} (seed {cell.seed})"
                progress = CellProgress(title)
                record = run_cell(cell, data, self.metrics, self.device, self.workspace, progress)
                progress.finish(record)
                yield record
            del data
