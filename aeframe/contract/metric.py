"""The metric contract: a metric reduces (reconstruction, target, label) batches to one number.

This module is imported when the plugin registry loads (``aeframe list``, ``aeframe plugins``,
``aeframe report``), which must not pay for importing torch: torch is imported inside the methods
that run during an evaluation.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class Metric(ABC):
    """Base class for metrics. Subclass it and register an instance with ``register_metrics``.

    ``name`` keys the stored value; ``title`` heads the table column; ``better`` is ``"lower"`` or
    ``"higher"`` (the report bolds the best value accordingly); ``format`` is a Python format spec
    for one value (e.g. ``".6f"``).

    The registered instance is a prototype: for every cell aeframe evaluates a fresh
    ``copy.deepcopy`` of it, so cells never share running state. Before the first cell of a dataset
    (per device) aeframe calls :meth:`prepare` once and gives its return value to every copy made
    for that dataset as the attribute ``prepared``. Then, per cell, :meth:`start` once,
    :meth:`update` for every test batch, :meth:`result` once at the end and :meth:`details`.
    Keep the running state on the batch's device and convert to a Python float only in
    :meth:`result`: that keeps evaluation free of per-batch synchronisation (:class:`MeanMetric`
    and :class:`RunningMean` do this for means).
    """

    name: str = ""
    title: str = ""
    better: str = "lower"
    format: str = ".6f"
    #: What :meth:`prepare` returned for this cell's dataset and device; shared by the copies, not copied.
    prepared: Any = None

    def prepare(self, context: Any) -> Any:
        """One-off work for a dataset before its first cell trains; return what the cells need.

        Called once per dataset (as ``-d`` gave it) and device in a run, with the
        :class:`aeframe.CellContext` of the first cell of that dataset; not counted in training or
        evaluation time. The return value (e.g. a reference model trained on this dataset) becomes
        ``self.prepared`` on every cell's copy and is shared, not copied, so the cells must only
        read it. Returning None and storing on ``self`` instead is the legacy way: it still works,
        but the stored state is then deep-copied for every cell.

        Args:
            context: The :class:`aeframe.CellContext` of the first cell of the dataset: its shape, dataset,
                device, data and cache directories, and ``load_dataset``.

        Returns:
            What the cells need, kept as ``self.prepared`` on every cell's copy; None (the default) for
                nothing.
        """
        return None

    def details(self) -> dict[str, Any]:
        """Facts kept with the cell's value. The report understands three keys: ``reference``, the
        metric's value on the original images (shown as the "Original Image" row), ``about``,
        one line saying how the metric was obtained (shown under the table), and ``not_scored``,
        why the metric has no value for this cell (shown as ``n/a: WHY`` in its column; let
        :meth:`result` return NaN then).

        Returns:
            JSON-serialisable facts by name, stored with the cell's value; empty (the default) for none.
        """
        return {}

    def start(self, context: Any) -> None:
        """Reset the running state; ``context`` is the cell's :class:`aeframe.CellContext`.

        The default zeroes a float64 ``self._sum`` on the cell's device and an int ``self._count``,
        which the default :meth:`result` divides.

        Args:
            context: The cell's :class:`aeframe.CellContext`; its ``device`` is where the batches will be.
        """
        import torch

        self._sum = torch.zeros((), dtype=torch.float64, device=getattr(context, "device", None))
        self._count = 0

    @abstractmethod
    def update(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold in one batch: ``recon`` and ``target`` float in [0, 1], (N, C, H, W); ``labels`` (N,).

        Args:
            recon: The model's reconstructions of the batch: float in [0, 1], (N, C, H, W).
            target: The original images of the batch: float in [0, 1], (N, C, H, W).
            labels: The images' class labels: int64, (N,).
        """

    def result(self) -> float:
        """The metric over every batch seen since :meth:`start`.

        Returns:
            The metric's value as a Python float (NaN where it has no value for this cell). The default
                divides ``self._sum`` by ``self._count`` (0.0 when no batch was seen).
        """
        return float(self._sum) / max(self._count, 1)


class RunningMean:
    """The mean of every entry of every tensor given to :meth:`add`, kept on those tensors' device.

    The sum is float64 and lives where the first values were (so adding never moves data or waits
    for a GPU); the count is a Python int taken from the shapes. :meth:`read` is the one point that
    synchronises.
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        """Fold in every entry of ``values`` (any shape; booleans count as 0 and 1).

        Args:
            values: A tensor of any shape and dtype, on the device of the values added before; summed in
                float64 without leaving it.
        """
        import torch

        batch_sum = values.sum(dtype=torch.float64)
        self.total = batch_sum if self.total is None else self.total + batch_sum
        self.count += values.numel()

    def read(self) -> float:
        """The mean so far as a Python float; 0.0 before anything was added (as ``Metric.result``).

        Returns:
            The sum of every entry added divided by their count; the one point that waits for the device.
        """
        if self.total is None:
            return 0.0
        return float(self.total) / max(self.count, 1)


class MeanMetric(Metric):
    """A metric that is the mean of all entries of :meth:`values` over the test split.

    Implement :meth:`values`; ``start``, ``update`` and ``result`` keep a :class:`RunningMean` in
    ``self.running``. What one entry is decides the weighting: one per element weighs pixels
    equally, one per image weighs images equally, whatever the batch sizes.
    """

    @abstractmethod
    def values(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """This batch's entries of the mean, on the batch's device (any shape).

        Args:
            recon: The model's reconstructions of the batch: float in [0, 1], (N, C, H, W).
            target: The original images of the batch: float in [0, 1], (N, C, H, W).
            labels: The images' class labels: int64, (N,).

        Returns:
            The entries this batch adds to the mean, in any shape: one per element weighs pixels equally,
                one per image weighs images equally.
        """

    def start(self, context: Any) -> None:
        """Start an empty running mean.

        Args:
            context: The cell's :class:`aeframe.CellContext` (not needed: the mean lives where the values are).
        """
        self.running = RunningMean()

    def update(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        """Add this batch's :meth:`values` to the running mean.

        Args:
            recon: The model's reconstructions of the batch: float in [0, 1], (N, C, H, W).
            target: The original images of the batch: float in [0, 1], (N, C, H, W).
            labels: The images' class labels: int64, (N,).
        """
        self.running.add(self.values(recon, target, labels))

    def result(self) -> float:
        """The mean of every entry seen since :meth:`start`.

        Returns:
            That mean as a Python float; 0.0 when no entry was seen.
        """
        return self.running.read()
