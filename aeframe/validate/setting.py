"""What the checks run with: the registry, directories, the tiny dataset and contexts for building."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aeframe.contract.dataset import ImageData
from aeframe.contract.technique import CellContext
from aeframe.data.loading import make_workspace
from aeframe.planning.plan import resolve_dataset
from aeframe.planning.syntax import parse_component
from aeframe.registry.plugins import BUILTIN_DIST, QUALIFIER, Registry

# Generated in well under a second, no files: every check that needs real images uses it.
TINY = "shapes[train=256,test=64]"
# Metrics may train a reference model (a classifier) on the dataset: the tiny dataset's is well above
# chance (its recipe trains 100 epochs of it, about 0.7 accuracy), and trained once serves every check.
METRIC_DATA = TINY
CPU = torch.device("cpu")
# Datasets that are not loaded (the model-builds check needs only their shape) report this many classes.
STAND_IN_CLASSES = 10


@dataclass
class Setting:
    """The registry the names come from, where data and derived files live, and the tiny dataset."""

    registry: Registry
    data_dir: Path
    cache_dir: Path
    tiny: str = TINY
    metric_data: str = METRIC_DATA
    say: Any = field(default=lambda _: None)

    def __post_init__(self) -> None:
        self.workspace = make_workspace(self.registry, self.data_dir, self.cache_dir, self.say)
        self.tiny, self.metric_data = self._builtin(self.tiny), self._builtin(self.metric_data)

    def _builtin(self, text: str) -> str:
        """``text`` naming the built-in dataset where a plugin registers another of its name: the checks
        are meant to run on aeframe's, and the bare name would be refused as ambiguous."""
        name = parse_component(text).name
        qualified = f"{BUILTIN_DIST}{QUALIFIER}{name}"
        if qualified in self.registry.ambiguous.get(("dataset", name), ()):
            return qualified + text.strip()[len(name):]
        return text

    def load(self, text: str) -> ImageData:
        """A registered dataset from its ``-d`` text, loaded once."""
        return self.workspace.load_dataset(text)

    def tiny_data(self) -> ImageData:
        return self.load(self.tiny)

    def context(self, shape: tuple[int, int, int], dataset_text: str, num_classes: int = STAND_IN_CLASSES,
                seed: int = 0) -> CellContext:
        """A CPU cell context for a dataset of this shape (the technique's params are filled in by build)."""
        return CellContext(
            shape=tuple(shape), dataset=resolve_dataset(dataset_text, self.registry).plugin.name,
            num_classes=num_classes, seed=seed, device=CPU, data_dir=self.data_dir, cache_dir=self.cache_dir,
            load_dataset=self.workspace.load_dataset, dataset_spec=dataset_text,
        )

    def loaded_context(self, text: str, seed: int = 0) -> CellContext:
        """The context of a cell on this dataset, loaded (so its real number of classes is known)."""
        data = self.load(text)
        return self.context(data.shape, text, len(data.classes), seed)

    def tiny_context(self, seed: int = 0) -> CellContext:
        return self.loaded_context(self.tiny, seed)
