"""The metric contract: a metric reduces (reconstruction, target, label) batches to one number."""
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

    The evaluator calls :meth:`start` once per cell, :meth:`update` for every test batch and
    :meth:`result` once at the end. Keep the running state on the batch's device and convert to a
    Python float only in :meth:`result`: that keeps evaluation free of per-batch synchronisation.
    """

    name: str = ""
    title: str = ""
    better: str = "lower"
    format: str = ".6f"

    def prepare(self, context: Any) -> None:
        """One-off work before the cell trains (e.g. train or load a reference model for this dataset).

        Called once per cell with its :class:`aeframe.CellContext`; not counted in training or
        evaluation time. Cache what is expensive: it is called for every cell.
        """

    def details(self) -> dict[str, Any]:
        """Facts kept with the cell's value. The report understands two keys: ``reference``, the
        metric's value on the original images (shown as the "Original Image" row), and ``about``,
        one line saying how the metric was obtained (shown under the table).
        """
        return {}

    def start(self, context: Any) -> None:
        """Reset the running state; ``context`` is the cell's :class:`aeframe.CellContext`."""
        import torch  # here, not at the top: building the plugin registry must not import torch

        self._sum = torch.zeros((), dtype=torch.float64)
        self._count = 0

    @abstractmethod
    def update(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold in one batch: ``recon`` and ``target`` float in [0, 1], (N, C, H, W); ``labels`` (N,)."""

    def result(self) -> float:
        """The metric over every batch seen since :meth:`start`."""
        return float(self._sum) / max(self._count, 1)
