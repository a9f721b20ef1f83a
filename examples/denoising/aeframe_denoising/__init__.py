"""aeframe-denoising: a salt-and-pepper denoising technique and a generated ``stripes`` dataset."""
