"""L1 Loss: the Baseline trained with the mean absolute error instead of the MSE.

It provides the loss, so it combines with any technique that provides the model (``l1-loss+vae``)
and is refused beside another that provides the loss (``l1-loss+feature-loss``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from aeframe import CellContext, Technique, hookimpl

if TYPE_CHECKING:
    import torch


class L1Loss(Technique):
    """The reconstruction loss as the mean absolute error; the model and schedule from the base."""

    name = "l1-loss"
    cuda_graphs = True
    title = "L1 Loss"
    description = "the mean absolute error as the reconstruction loss, in place of the Baseline's MSE"
    base = "baseline"

    def build_loss(self, ctx: CellContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        from torch.nn.functional import l1_loss

        return l1_loss


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``l1-loss``."""
    register(L1Loss())
