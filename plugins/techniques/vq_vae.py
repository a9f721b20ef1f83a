"""VQ-VAE (van den Oord et al., 2017): a convolutional autoencoder whose latent is a grid of codewords.

The model is :class:`aeframe_builtins.techniques.vae_models.VQVAE`; it returns its codebook and
commitment terms as ``aeframe.ModelOutput`` terms, which aeframe adds to the reconstruction loss. The
loss (MSE) and the schedule are the Baseline's.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl
from aeframe_builtins.techniques.vae import check_quarter_grid

if TYPE_CHECKING:
    from torch import nn


class VectorQuantisedVAE(Technique):
    """Provides the model: a convolutional VQ-VAE whose codebook and commitment terms join the reconstruction loss."""

    name = "vq-vae"
    cuda_graphs = True  # the nearest codeword is found on the device, with no host synchronisation
    title = "VQ-VAE"
    description = "a convolutional VQ-VAE; its codebook and commitment terms are added to the reconstruction loss"
    base = "baseline"
    params = (Param("codes", int, 32, "codewords in the codebook"),
              Param("dim", int, 8, "length of a codeword: the latent channels per position"),
              Param("commitment", float, 0.25, "weight of the commitment term (0.25 in the paper)"))

    def check_params(self, params: dict[str, Any]) -> None:
        for key in ("codes", "dim"):
            if params[key] < 1:
                raise ValueError(f"{key}={params[key]}: give 1 or more")
        commitment = params["commitment"]
        if not math.isfinite(commitment) or commitment < 0:
            raise ValueError(f"commitment={commitment:g}: give a weight of 0 or more")

    def check_shape(self, params: dict[str, Any], shape: tuple[int, int, int]) -> None:
        check_quarter_grid(shape)

    def build_model(self, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.vae_models import VQVAE

        params = ctx.params
        return VQVAE(ctx.shape[0], codes=params["codes"], dim=params["dim"], commitment=params["commitment"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``vq-vae``."""
    register(VectorQuantisedVAE())
