"""The VAE's and the VQ-VAE's models. Each returns ``aeframe.ModelOutput``: the reconstruction, and in
training mode the loss terms of its own that aeframe adds to the reconstruction loss and records one by one.

Both share one convolutional encoder and decoder: two stride-2 (transposed) convolutions each, so the
latent is a grid a quarter of the image's side, and the sides must be multiples of 4
(:func:`aeframe_builtins.techniques.vae.check_quarter_grid`, at planning).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeframe import ModelOutput


def _encoder(channels: int, width: int, out: int) -> nn.Sequential:
    """(C, H, W) -> (out, H/4, W/4)."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(width, out, 4, stride=2, padding=1),
    )


def _decoder(channels: int, width: int, latent: int) -> nn.Sequential:
    """(latent, H/4, W/4) -> (C, H, W), squashed into [0, 1] like the images."""
    return nn.Sequential(
        nn.ConvTranspose2d(latent, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid(),
    )


class BetaVAE(nn.Module):
    """A convolutional VAE with a spatial Gaussian latent (Kingma and Welling, 2014; beta: Higgins et al., 2017).

    Args:
        channels: The images' channels (1 for Fashion-MNIST's native view, 3 for CIFAR-10).
        latent: Latent channels per position of the H/4 x W/4 latent grid.
        width: Channels of the hidden convolutions.
        beta: Weight of the KL term; 1 is the plain VAE, 0 leaves an autoencoder with a noisy latent.
    """

    def __init__(self, channels: int, latent: int = 8, width: int = 32, beta: float = 1.0):
        super().__init__()
        self.encoder = _encoder(channels, width, 2 * latent)
        self.decoder = _decoder(channels, width, latent)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        if not self.training:  # evaluation decodes the mean, so that reconstructions are deterministic
            return ModelOutput(self.decoder(mu))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        # KL(q(z|x) || N(0, I)) per image, divided by the pixels so that it weighs like a per-pixel MSE.
        kl = -0.5 * (1 + log_var - mu.square() - log_var.exp()).flatten(1).sum(1).mean() / x[0].numel()
        return ModelOutput(self.decoder(z), {"kl": self.beta * kl})


class VectorQuantiser(nn.Module):
    """Nearest-codeword quantisation with a straight-through gradient (van den Oord et al., 2017).

    Args:
        codes: Codewords in the codebook.
        dim: Length of a codeword: the encoder's output channels.
        commitment: Weight of the commitment term.
    """

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
        # The decoder sees the codeword; the gradient passes to the encoder as if it had seen z.
        return z + (chosen - z).detach(), terms


class VQVAE(nn.Module):
    """A convolutional VQ-VAE: the encoder's outputs replaced by their nearest codewords.

    Args:
        channels: The images' channels.
        codes: Codewords in the codebook.
        dim: Length of a codeword.
        width: Channels of the hidden convolutions.
        commitment: Weight of the commitment term (0.25 in the paper).
    """

    def __init__(self, channels: int, codes: int = 32, dim: int = 8, width: int = 32, commitment: float = 0.25):
        super().__init__()
        self.encoder = _encoder(channels, width, dim)
        self.quantise = VectorQuantiser(codes, dim, commitment)
        self.decoder = _decoder(channels, width, dim)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        quantised, terms = self.quantise(self.encoder(x))
        return ModelOutput(self.decoder(quantised), terms if self.training else {})
