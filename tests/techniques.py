"""Helpers for technique tests: a context to build parts with, and one real cell to train."""
from __future__ import annotations

from pathlib import Path

import torch

from aeframe import CellContext
from aeframe.cells.budget import Budget
from aeframe.training.cell import run_cell
from aeframe.execution.environment import device_info, versions
from conftest import cell_data, metric_set
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

CPU = torch.device("cpu")


def context(shape=(3, 32, 32), dataset="shapes", seed=0) -> CellContext:
    return CellContext(shape=shape, dataset=dataset, num_classes=10, seed=seed, device=CPU, data_dir=Path("."),
                       cache_dir=Path("."), load_dataset=lambda text: None)


def build(technique: str, registry, **ctx):
    """Model, loss and schedule of ``technique`` (a ``-t`` text) for a context like :func:`context`'s."""
    torch.manual_seed(0)
    return resolve_technique(technique, registry).build(context(**ctx))


def train_cell(technique: str, registry, workspace, dataset="shapes[train=256,test=64]", budget=Budget(epochs=3),
               lr="study"):
    """Plan and run one real cell on CPU; returns its record."""
    comp = resolve_technique(technique, registry)
    choice = resolve_dataset(dataset, registry)
    cell = plan_cells([comp], [choice], 1, budget, device_info(CPU), versions(), registry, lr)[0]
    data = cell_data(choice.label, registry)
    return run_cell(cell, data, metric_set(registry), CPU, workspace, registry)
