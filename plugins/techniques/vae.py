"""VAE (Kingma and Welling, 2014), with the KL term weighted by ``beta`` (Higgins et al., 2017).

The model is :class:`aeframe_builtins.techniques.vae_models.BetaVAE`; it returns its KL term as an
``aeframe.ModelOutput`` term, which aeframe adds to the reconstruction loss. The loss (MSE) and the
schedule are the Baseline's.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl

if TYPE_CHECKING:
    from torch import nn

# The models' encoders halve the side twice and their decoders double it twice.
GRID = 4


def check_quarter_grid(shape: tuple[int, int, int]) -> None:
    """Refuse images whose sides the models' latent grid, a quarter of the side, does not fit."""
    _, height, width = shape
    if height % GRID or width % GRID:
        raise ValueError(f"the {height}x{width} images' sides are not multiples of {GRID}, which the model's "
                         f"latent grid (a quarter of the side) needs")


class VAE(Technique):
    """Provides the model: a convolutional VAE whose KL term, weighted by beta, joins the reconstruction loss."""

    name = "vae"
    cuda_graphs = True  # the latent is sampled on the device, from torch's generator
    title = "VAE"
    description = "a convolutional VAE; its KL term, weighted by beta, is added to the reconstruction loss"
    base = "baseline"
    params = (Param("beta", float, 1.0, "weight of the KL divergence term (1: the plain VAE)"),
              Param("latent", int, 8, "latent channels per position of the grid a quarter of the image's side"))

    def check_params(self, params: dict[str, Any]) -> None:
        beta, latent = params["beta"], params["latent"]
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta={beta:g}: give a weight of 0 or more")
        if latent < 1:
            raise ValueError(f"latent={latent}: the latent needs at least 1 channel")

    def check_shape(self, params: dict[str, Any], shape: tuple[int, int, int]) -> None:
        check_quarter_grid(shape)

    def build_model(self, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.vae_models import BetaVAE

        return BetaVAE(ctx.shape[0], latent=ctx.params["latent"], beta=ctx.params["beta"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``vae``."""
    register(VAE())
