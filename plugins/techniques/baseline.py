"""The study's Baseline autoencoder (seed-protocol.md section 2.2) trained with its protocol.

The model is :func:`aeframe_builtins.techniques.layers.baseline_autoencoder`; the loss is MSE; the schedule is
the study's two one-cycle runs, whose second-run rate (1e-3) is the one the study chose for the
Baseline, so it declares no learning rate of its own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe import Schedule


class Baseline(Technique):
    name = "baseline"
    cuda_graphs = True
    title = "Baseline"
    description = "the study's conv autoencoder: 1000-d linear bottleneck, nearest-neighbour upsampling, MSE loss"
    params = (Param("latent", int, 1000, "size of the bottleneck vector"),)
    reference = True  # every other row is compared with the Baseline, as in the study
    in_study = True

    def check_params(self, params: dict[str, Any]) -> None:
        if params["latent"] < 1:
            raise ValueError(f"latent={params['latent']}: the bottleneck needs at least 1 unit")

    def build_model(self, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.layers import baseline_autoencoder

        return baseline_autoencoder(ctx.shape, latent=ctx.params["latent"])

    def build_loss(self, ctx: CellContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        from torch.nn.functional import mse_loss

        return mse_loss

    def build_schedule(self, ctx: CellContext) -> Schedule:
        from aeframe import study_schedule

        return study_schedule()


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``baseline``."""
    register(Baseline())
