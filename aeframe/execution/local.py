"""Training cells one after another in this process: the driver's :class:`aeframe.executors.Work`, whose
``train_here`` is the ``local`` executor's whole work and what any executor uses for the cells it
trains where it stands."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aeframe.cells.record import CellRecord
from aeframe.contract.executor import DatasetGroup, Work
from aeframe.contract.metric import Metric
from aeframe.data.loading import Workspace
from aeframe.data.splits import on_device
from aeframe.execution.progress import CellProgress
from aeframe.registry.plugins import Registry
from aeframe.training.cell import data_context, run_cell
from aeframe.training.metric_set import MetricSet


@dataclass
class LocalWork(Work):
    """A run's work as the driver holds it: the plugins its cells are rebuilt from, its workspace (so a
    technique asking for another dataset gets the one this run loaded) and the metrics' prototypes."""

    registry: Registry
    workspace: Workspace
    metrics: Sequence[Metric]
    data_dir: Path = field(init=False)
    cache_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir, self.cache_dir = self.workspace.data_dir, self.workspace.cache_dir

    def train_here(self, groups: Sequence[DatasetGroup], device: torch.device) -> Iterator[CellRecord]:
        metrics = MetricSet(self.metrics)
        total = sum(len(group.cells) for group in groups)
        position = 0
        for group in groups:
            # The same tensors the workspace hands to metrics and techniques that ask for this dataset.
            data = on_device(group.data, device)
            if group.cells:
                metrics.prepare(data_context(group.cells[0], data, device, self.workspace))
            for spec in group.cells:
                position += 1
                progress = CellProgress(f"[{position}/{total}] {spec.title}")
                record = run_cell(spec, data, metrics, device, self.workspace, self.registry, progress)
                progress.finish(record)
                yield record
            del data
