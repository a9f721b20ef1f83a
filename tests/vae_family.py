"""A third-party plugin in the style the field brings: a beta-VAE and a VQ-VAE, whose models return
loss terms of their own through ``aeframe.ModelOutput``, and two techniques that change the loss: one
that replaces it (L1) and one that wraps it (a scale). It imports nothing but ``aeframe`` and torch,
and passes no value beside the model's output: the tests register it through an entry point.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeframe import ModelOutput, Param, Technique, hookimpl


def _encoder(channels: int, width: int, out: int) -> nn.Sequential:
    """Two stride-2 convolutions: (C, H, W) -> (out, H/4, W/4)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(width, out, 4, stride=2, padding=1),
    )


def _decoder(channels: int, width: int, latent: int) -> nn.Sequential:
    """Two stride-2 transposed convolutions back to (C, H, W), squashed into [0, 1]."""
    return nn.Sequential(
        nn.ConvTranspose2d(latent, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid(),
    )


class BetaVAE(nn.Module):
    """A convolutional VAE with a spatial Gaussian latent; ``beta`` weighs the KL term."""

    def __init__(self, channels: int, latent: int = 8, width: int = 32, beta: float = 1.0):
        super().__init__()
        self.encoder = _encoder(channels, width, 2 * latent)
        self.decoder = _decoder(channels, width, latent)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        if not self.training:  # evaluation decodes the mean: deterministic reconstructions
            return ModelOutput(self.decoder(mu))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        # KL(q(z|x) || N(0, I)) per image, divided by the pixels so that it weighs like a per-pixel MSE.
        kl = -0.5 * (1 + log_var - mu.square() - log_var.exp()).flatten(1).sum(1).mean() / x[0].numel()
        return ModelOutput(self.decoder(z), {"kl": self.beta * kl})


class VectorQuantiser(nn.Module):
    """Nearest-codeword quantisation with a straight-through gradient (van den Oord et al., 2017)."""

    def __init__(self, codes: int, dim: int, commitment: float):
        super().__init__()
        self.codebook = nn.Embedding(codes, dim)
        nn.init.uniform_(self.codebook.weight, -1 / codes, 1 / codes)
        self.commitment = commitment

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        nearest = torch.cdist(flat, self.codebook.weight).argmin(1)
        chosen = self.codebook(nearest).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        terms = {
            "codebook": F.mse_loss(chosen, z.detach()),  # moves the codewords towards the encodings
            "commitment": self.commitment * F.mse_loss(z, chosen.detach()),  # keeps the encoder near its codeword
        }
        return z + (chosen - z).detach(), terms


class VQVAE(nn.Module):
    def __init__(self, channels: int, codes: int = 32, dim: int = 8, width: int = 32, commitment: float = 0.25):
        super().__init__()
        self.encoder = _encoder(channels, width, dim)
        self.quantise = VectorQuantiser(codes, dim, commitment)
        self.decoder = _decoder(channels, width, dim)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        quantised, terms = self.quantise(self.encoder(x))
        return ModelOutput(self.decoder(quantised), terms if self.training else {})


class BetaVAETechnique(Technique):
    name, title = "beta-vae", "Beta-VAE"
    description = "a convolutional VAE; its KL term, weighted by beta, is added to the reconstruction loss"
    base = "baseline"  # the loss (MSE) and the schedule come from the Baseline
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


class L1Loss(Technique):
    """Replaces the reconstruction loss: so it provides it, and is refused beside another provider."""

    name, title, base = "l1-loss", "L1 Loss", "baseline"
    description = "mean absolute error as the reconstruction loss"

    def build_loss(self, ctx):
        return F.l1_loss


class LossScale(Technique):
    """Wraps whatever reconstruction loss the combination has."""

    name, title, base = "loss-scale", "Loss Scale", "baseline"
    description = "multiplies the reconstruction loss by a factor"
    params = (Param("factor", float, 2.0, "what the reconstruction loss is multiplied by"),)

    def wrap_loss(self, loss, ctx):
        factor = ctx.params["factor"]
        return lambda output, target: factor * loss(output, target)


@hookimpl
def register_techniques(register):
    for technique in (BetaVAETechnique(), VQVAETechnique(), L1Loss(), LossScale()):
        register(technique)
