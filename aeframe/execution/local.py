"""Training cells one after another in this process: the ``local`` executor's whole work, and what
any executor can use for the cells it runs where it stands."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from aeframe.training.cell import run_cell
from aeframe.data.splits import on_device
from aeframe.training.metric_set import MetricSet
from aeframe.execution.progress import CellProgress

if TYPE_CHECKING:
    import torch

    from aeframe.contract.executor import Work
    from aeframe.execution.groups import DatasetGroup
    from aeframe.cells.record import CellRecord


def train_cells(groups: Sequence[DatasetGroup], work: Work, device: torch.device) -> Iterator[CellRecord]:
    """Train every cell of ``groups`` on ``device``, dataset after dataset, with a progress bar per cell
    on stderr; yield each record as its cell ends. Each metric is prepared once per dataset."""
    metrics = MetricSet(work.metrics)
    total = sum(len(group.cells) for group in groups)
    position = 0
    for group in groups:
        # The same tensors the workspace hands to metrics and techniques that ask for this dataset.
        data = on_device(group.data, device)
        for cell in group.cells:
            position += 1
            title = f"[{position}/{total}] {cell.composition.label} on {group.dataset.label} (seed {cell.seed})"
            progress = CellProgress(title)
            record = run_cell(cell, data, metrics, device, work.workspace, progress)
            progress.finish(record)
            yield record
        del data
