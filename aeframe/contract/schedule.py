"""A training schedule as a function of progress in [0, 1], so one plan serves any budget.

Progress is the share of the budget used: steps done / steps allowed under an epoch budget, seconds
spent / seconds allowed under a time budget (the larger of the two when both are set). A schedule
is a list of phases that split that interval; inside a phase the learning rate and Adam's beta1
follow curves of the phase's own progress ``q`` in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch
    from torch import nn

ParamGroups = Callable[["nn.Module"], "list[list[nn.Parameter]]"]
#: Builds an optimizer from torch parameter-group dicts (``[{"params": [...], "lr": rate}, ...]``).
MakeOptimizer = Callable[[list[dict]], "torch.optim.Optimizer"]


@dataclass(frozen=True)
class LrCurve:
    """The shape of the learning rate within a phase (a technique's ``build_lr_curve`` provides one).

    lr_at:    (q, max_lr) -> the learning rate at the phase's progress ``q`` in [0, 1], for its peak
              rate ``max_lr`` (each parameter group's peak in turn).
    beta1_at: q -> Adam's beta1, or None to leave the optimizer's own.
    name:     what the curve is, for the record ("cosine, 5% warm-up").
    """

    lr_at: Callable[[float, float], float]
    beta1_at: Callable[[float], float] | None = None
    name: str = ""


@dataclass
class Phase:
    """One stretch of training.

    fraction:        its share of the budget (a schedule's fractions sum to 1).
    max_lr:          the peak learning rate, or one per parameter group (see ``param_groups``).
    name:            shown in progress and stored in the curve.
    fresh_optimizer: build a new optimizer at its start (else the previous one's state carries over).
    image_size:      train on images resized to this side (``None``: the dataset's own size).
    on_start:        called with the model when the phase begins (unfreeze layers, change a scale...).
    param_groups:    splits the model's parameters into groups, one learning rate each.
    find_lr:         under ``--lr find``, a learning-rate range test run when the phase begins sets
                     its peak rate (the top group's; the other groups keep their ratios to it).
    """

    fraction: float
    max_lr: float | Sequence[float]
    name: str = ""
    fresh_optimizer: bool = False
    image_size: int | None = None
    on_start: Callable[[nn.Module], None] | None = None
    param_groups: ParamGroups | None = None
    find_lr: bool = False

    def lrs(self) -> list[float]:
        """The phase's peak learning rates, one per parameter group.

        Returns:
            The rates of :attr:`max_lr` as a list of floats: one item for a single rate.
        """
        return [float(self.max_lr)] if isinstance(self.max_lr, (int, float)) else [float(x) for x in self.max_lr]


@dataclass
class Schedule:
    """Everything about how a model is trained, apart from the model and the loss.

    phases:         the phases in order.
    make_optimizer: builds the optimizer from torch parameter-group dicts (``{"params": [...]}``); a
                    technique's ``build_optimizer`` replaces it, ``wrap_optimizer`` wraps it.
    lr_at:          (q, max_lr) -> learning rate at phase progress q (a technique's ``build_lr_curve``
                    replaces it and beta1_at together).
    beta1_at:       q -> Adam's beta1 (the "momentum" of one-cycle), or None to leave it alone; set only
                    in parameter groups that have ``betas`` (an SGD's are left alone).
    augment:        (batch in [0, 1], generator) -> augmented batch; input and target both get it.
    batch_size:     training batch size; the last partial batch of an epoch is dropped.
    """

    phases: list[Phase]
    make_optimizer: MakeOptimizer
    lr_at: Callable[[float, float], float]
    beta1_at: Callable[[float], float] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    batch_size: int = 128

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a schedule needs at least one phase")
        if any(p.fraction <= 0 for p in self.phases):
            raise ValueError("every phase needs a positive fraction of the budget")
        total = sum(p.fraction for p in self.phases)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"phase fractions must sum to 1, got {total:g}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")

    def boundaries(self) -> list[float]:
        """Progress at which each phase starts, plus 1.0 at the end.

        Returns:
            One more value than there are phases: 0.0, the running sums of the fractions, and exactly 1.0
                last.
        """
        edges, acc = [0.0], 0.0
        for phase in self.phases:
            acc += phase.fraction
            edges.append(acc)
        edges[-1] = 1.0
        return edges

    def locate(self, progress: float) -> tuple[int, float]:
        """The phase index for this progress, and the progress inside that phase.

        Args:
            progress: The share of the budget used, in [0, 1]; values outside are clamped to it.

        Returns:
            The index of the phase in :attr:`phases`, and the progress ``q`` in [0, 1] inside it.
        """
        progress = min(max(progress, 0.0), 1.0)
        edges = self.boundaries()
        for i, phase in enumerate(self.phases):
            if progress < edges[i + 1] or i == len(self.phases) - 1:
                return i, min((progress - edges[i]) / phase.fraction, 1.0)
        raise AssertionError("unreachable: the last phase always matches")
