"""The executor calls of aeframe before 0.2, kept so that executors written against them still run.

Since 0.2 an executor is handed cell specs (:class:`aeframe.executors.CellSpec`), which are what used to
be made from a cell with ``order_of``: plain data that travels to a worker. docs/plugins.md, "Plugins
written for aeframe 0.1", says what each name became.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from aeframe.cells.record import CellRecord
from aeframe.cells.spec import CellSpec
from aeframe.contract.dataset import ImageData
from aeframe.contract.executor import DatasetGroup, Work
from aeframe.contract.metric import Metric
from aeframe.execution.remote import Prepared, train_cell
from aeframe.registry.plugins import Registry

#: What ``order_of`` made: now the spec itself.
CellOrder = CellSpec


def order_of(cell: CellSpec, metrics: Sequence[Metric]) -> CellSpec:
    """The spec of ``cell`` (a spec already), naming ``metrics`` where it names none."""
    return cell if cell.metrics else replace(cell, metrics=tuple(m.name for m in metrics))


def failed_order(order: CellSpec, reason: str, started_at: str | None = None) -> CellRecord:
    """``order.failed(reason)``."""
    return order.failed(reason, started_at)


def run_order(order: CellSpec, data: ImageData, prepared: Prepared | None, device: torch.device, data_dir: Path,
              cache_dir: Path, registry: Registry | None = None) -> CellRecord:
    """``train_cell`` with the arguments in their old order."""
    return train_cell(order, data, device, data_dir, cache_dir, prepared, registry)


def shippable(data: ImageData) -> dict[str, Any]:
    """``data.to_arrays()``."""
    return data.to_arrays()


def unshipped(arrays: dict[str, Any]) -> ImageData:
    """``ImageData.from_arrays(arrays)``."""
    return ImageData.from_arrays(arrays)


def train_cells(groups: Sequence[DatasetGroup], work: Work, device: torch.device) -> Iterator[CellRecord]:
    """``work.train_here(groups, device)``."""
    return work.train_here(groups, device)
