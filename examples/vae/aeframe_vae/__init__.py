"""aeframe-vae: a beta-VAE and a VQ-VAE whose models add loss terms of their own to the reconstruction loss."""
