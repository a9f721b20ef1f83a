"""The executor contract: where and how the planned cells are trained.

The driver (:mod:`aeframe.execution.bench`) plans the cells, loads every dataset once, fingerprints it and
keys its cells (:mod:`aeframe.execution.groups`), and writes every record to the store. An executor
only trains: it is handed each dataset's pending cell specs with their data (:class:`DatasetGroup`)
and yields one record per cell as each one ends, in whatever order they end. Executors are plugins
(``register_executors``); the built-in ``local`` one trains in this process, ``ray`` on a Ray
cluster.

This module is imported when the registry loads, so it must not import torch.
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from aeframe.cells.record import CellRecord
from aeframe.cells.spec import CellSpec
from aeframe.contract.dataset import ImageData
from aeframe.contract.metric import Metric

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

#: The options of ``aeframe bench`` that only some executors use (``Executor.accepts``); giving one
#: to an executor that does not take it is a usage error, not silently ignored.
PLACEMENT_OPTIONS: dict[str, str] = {
    "address": "--ray-address",
    "gpus_per_cell": "--gpus-per-cell",
    "cpus_per_cell": "--cpus-per-cell",
    "cells_per_device": "--cells-per-device",
    "retries": "--retries",
}


def _to_stderr(message: str) -> None:
    """Print one line for the user on stderr, after ``aeframe:``: :attr:`ExecutorSettings.say`'s default.

    Args:
        message: The line to show, without the ``aeframe:`` prefix or a newline.
    """
    print(f"aeframe: {message}", file=sys.stderr, flush=True)


@dataclass
class ExecutorSettings:
    """What the user asked of the executor on the command line."""

    device: str = "auto"  # --device as typed: auto, cpu, cuda or cuda:N
    address: str | None = None  # --ray-address (or RAY_ADDRESS)
    gpus_per_cell: float | None = None  # None: the executor's default
    cpus_per_cell: int | None = None  # None: the executor's default
    cells_per_device: int | str = 1  # cells trained at once on the device (worker processes), or "auto"
    retries: int = 2  # how often a cell whose worker process died is started again
    data_dir: Path | None = None
    cache_dir: Path | None = None
    say: Callable[[str], None] = _to_stderr  # one line for the user; stdout is for results only
    given: set[str] = field(default_factory=set)  # the PLACEMENT_OPTIONS the user gave


@dataclass
class DatasetGroup:
    """One dataset's pending cells and the data they train on: what an executor is handed.

    dataset: the dataset as ``-d`` took it (``shapes[train=512]``).
    data:    its loaded images, the same for every cell (``data.to_arrays()`` ships it without copies).
    cells:   the cells to train, as :class:`aeframe.executors.CellSpec` (keyed, picklable).
    """

    dataset: str
    data: ImageData
    cells: list[CellSpec]


class Work(ABC):
    """What every cell of a run shares besides its data, and training cells in this process.

    metrics:   the registered metrics (prototypes); every cell spec names the ones it is evaluated with.
    data_dir:  where datasets live on the driver's machine (a worker elsewhere uses its own).
    cache_dir: where plugins keep what they derive (a reference classifier, pretrained weights).
    """

    metrics: Sequence[Metric]
    data_dir: Path
    cache_dir: Path

    @abstractmethod
    def train_here(self, groups: Sequence[DatasetGroup], device: torch.device) -> Iterator[CellRecord]:
        """Train every cell of ``groups`` in this process on ``device``, one after another, with a progress
        bar each on stderr, and yield each record as its cell ends: the ``local`` executor's whole work.

        Each dataset's metrics are prepared once; each cell is rebuilt from its spec with the plugins of
        this run, exactly as :func:`aeframe.executors.train_cell` rebuilds it on a worker.

        Args:
            groups: Each dataset's pending cells with their loaded data, trained in this order.
            device: The torch device every cell trains on.

        Yields:
            Each cell's record as the cell ends, one per cell.
        """


class ExecutorSession(ABC):
    """An executor ready to train: a device chosen, a cluster connected. Close it (or use ``with``)."""

    #: "cpu" or "cuda": the kind of device the cells will train on. It is part of every cell's key,
    #: so it must be known before the first cell runs.
    device_type: str = "cpu"
    #: Where the cells train, for the run's opening line ("a local Ray cluster: 2 CPUs").
    where: str = ""

    @abstractmethod
    def on_cell_device(self, fn: Callable[[torch.device], T]) -> T:
        """``fn(device)`` run where a cell would run, with the resources a cell gets; its result.

        The driver measures ``--precision auto`` and checks the speed settings through it, so that
        they describe the device the cells use, not the driver's. ``fn`` must be picklable.

        Args:
            fn: A picklable function of the torch device a cell would train on.

        Returns:
            What ``fn`` returned there.
        """

    @abstractmethod
    def run(self, groups: Sequence[DatasetGroup], work: Work) -> Iterator[CellRecord]:
        """Train every cell of ``groups`` and yield its record as soon as it ends (any order).

        Every cell gets exactly one record: a cell that cannot be trained is a failed record
        saying why (``spec.failed(reason)``), never an exception. Ctrl-C (KeyboardInterrupt) stops the cells in flight and
        propagates; the records already yielded are saved by the driver.

        Args:
            groups: Each dataset's pending cell specs with their loaded data.
            work: What every cell shares besides its data (the metrics, the data and cache directories),
                and :meth:`Work.train_here` to train cells in this process.

        Yields:
            Each cell's record as soon as the cell ends, done or failed, exactly one per cell.
        """

    def close(self) -> None:
        """Release what :meth:`Executor.open` took (a cluster it started, say)."""

    def __enter__(self) -> ExecutorSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Executor(ABC):
    """Base class for executors. Subclass it and register an instance with ``register_executors``.

    ``name`` is what users type after ``--executor``; ``title`` and ``description`` are shown by
    ``aeframe list executors``. ``accepts`` names the placement options it uses (keys of
    :data:`PLACEMENT_OPTIONS`); aeframe refuses the others.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    accepts: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """None when the executor can run here; else one line saying what is missing and how to get it.

        Must be cheap and must not import heavy libraries when they are absent: ``aeframe list
        executors`` calls it for every executor.

        Returns:
            None (the default) when the executor can run here, else one line saying what is missing and how
                to get it.
        """
        return None

    @abstractmethod
    def open(self, settings: ExecutorSettings) -> ExecutorSession:
        """Connect or start what the executor needs and choose the cells' device kind.

        Raise :class:`aeframe.errors.UsageProblem` (a usage error, exit 2) for settings that
        cannot work, with one line naming the option.

        Args:
            settings: What the user asked of the executor on the command line: the device, the placement
                options given, the data and cache directories, and where to say things.

        Returns:
            A session ready to train; the driver closes it when the run ends.

        Raises:
            UsageProblem: For settings that cannot work, with one line naming the option.
        """
