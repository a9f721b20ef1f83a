"""The two techniques: each provides its model and takes the loss and the schedule from the Baseline."""
from __future__ import annotations

from aeframe import Param, Technique

from aeframe_vae.models import VQVAE, BetaVAE


class BetaVAETechnique(Technique):
    name, title = "beta-vae", "Beta-VAE"
    description = "a convolutional VAE; its KL term, weighted by beta, is added to the reconstruction loss"
    base = "baseline"  # the reconstruction loss (MSE) and the schedule come from the Baseline
    params = (Param("beta", float, 1.0, "weight of the KL divergence term"),
              Param("latent", int, 8, "latent channels per position"))

    def build_model(self, ctx):
        return BetaVAE(ctx.shape[0], latent=ctx.params["latent"], beta=ctx.params["beta"])


class VQVAETechnique(Technique):
    name, title = "vq-vae", "VQ-VAE"
    description = "a convolutional VQ-VAE; its codebook and commitment terms are added to the reconstruction loss"
    base = "baseline"
    params = (Param("codes", int, 32, "codebook size"),)

    def build_model(self, ctx):
        return VQVAE(ctx.shape[0], codes=ctx.params["codes"])
