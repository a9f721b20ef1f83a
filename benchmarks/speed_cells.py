"""The data and freshly built techniques that the three training loops are given.

Each loop gets its own model, built exactly as ``run_cell`` builds it (global seed first, then the
composition), so all three start from the same weights and draw the same random numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from aeframe.training.cell import seed_everything
from aeframe.planning.composition import Composition
from aeframe.data.splits import CellData, on_device
from aeframe.contract.dataset import ImageData
from aeframe.data.loading import Workspace
from aeframe.planning.plan import DatasetChoice
from aeframe.contract.schedule import Schedule
from aeframe.cells.settings import Speed
from aeframe.contract.technique import CellContext

from study_style import UInt8Images

SEED = 0


@dataclass
class BenchData:
    """One dataset twice: on the device as aeframe holds it, and as a torchvision Dataset of PIL images."""

    label: str
    device: torch.device
    cells: CellData
    study: UInt8Images

    @property
    def images(self) -> int:
        return len(self.cells.train)


def load_bench_data(choice: DatasetChoice, device: torch.device, workspace: Workspace) -> BenchData:
    # Through the workspace, so a technique that pretrains on the same dataset reuses these tensors.
    loaded: ImageData = workspace.load_dataset(choice.label)
    study = UInt8Images(loaded.train.images, loaded.train.labels)
    return BenchData(choice.label, device, on_device(loaded, device), study)


@dataclass
class FreshCell:
    """A technique's model, loss and schedule as built for a new cell, on the device."""

    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    schedule: Schedule
    context: CellContext
    speed: Speed

    def generator(self) -> torch.Generator:
        """The cell's generator for batch order and augmentation, seeded as ``run_cell`` seeds it."""
        return torch.Generator(device=self.context.device).manual_seed(self.context.seed)


def cell_context(data: BenchData, choice: DatasetChoice, workspace: Workspace) -> CellContext:
    return CellContext(
        shape=tuple(data.cells.train.images.shape[1:]),
        dataset=choice.plugin.name,
        num_classes=data.cells.num_classes,
        seed=SEED,
        device=data.device,
        data_dir=workspace.data_dir,
        cache_dir=workspace.cache_dir,
        load_dataset=workspace.load_dataset,
        dataset_spec=choice.label,
    )


def build_fresh(composition: Composition, context: CellContext, speed: Speed) -> FreshCell:
    """Raises ``TechniqueUnavailable`` (or ``DatasetUnavailable``) as the technique does in a cell."""
    seed_everything(context.seed)
    built = composition.build(context)
    loss = built.loss.to(context.device) if isinstance(built.loss, nn.Module) else built.loss
    return FreshCell(built.model.to(context.device), loss, built.schedule, context, speed)
