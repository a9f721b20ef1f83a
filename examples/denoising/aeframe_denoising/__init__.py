"""aeframe-denoising: a denoising autoencoder technique and a generated ``stripes`` dataset."""
