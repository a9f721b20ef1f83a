"""The study's VGG feature loss (seed-protocol.md sections 2.6 and 3.2), and the VGG16-bn it runs through.

The loss compares the clamped output with the target in pixels and through a frozen VGG16 with
batch norm (``vgg16_bn().features``, ImageNet weights, always in eval mode): at each chosen ReLU
it adds a weighted MSE of the activations and a weighted MSE of their Gram matrices. As in the
study, VGG sees the raw [0, 1] images, not ImageNet-normalised ones, and grey images are repeated
to three channels. Imported only when a loss is built: it needs torch and torchvision, which
registering the technique must not import.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aeframe import TechniqueUnavailable
from aeframe_builtins.techniques.names import FEATURE_LOSS as NAME
from aeframe_builtins.techniques.pretrained import imagenet_weights, load_weights_file

# The checkpoint the study loaded (torchvision's IMAGENET1K_V1 for vgg16_bn).
VGG16_BN_URL = "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"
OFFLINE_ALTERNATIVE = f"{NAME}[net=random] uses an untrained VGG16-bn"


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Per-image Gram matrices of a (B, C, H, W) batch: F·Fᵀ / (C·H·W), shape (B, C, C)."""
    b, c, h, w = features.shape
    # Part of the loss, which stays fp32: under bf16/fp16 autocast this product would be rounded,
    # and the Gram term's weight (up to 5000·w²) would magnify that.
    with torch.autocast(features.device.type, enabled=False):
        flat = features.reshape(b, c, h * w).float()
        return flat @ flat.transpose(1, 2) / (c * h * w)


class VGGFeatureLoss(nn.Module):
    """The study's feature loss between a model's output and its target, both (B, C, H, W) in [0, 1]::

        pixel·MSE(out, target) + Σᵢ wᵢ·MSE(φᵢ(out), φᵢ(target)) + Σᵢ gram·wᵢ²·MSE(G(φᵢ(out)), G(φᵢ(target)))

    ``features`` is a (possibly truncated) ``vgg16_bn().features``; it is frozen and kept in eval
    mode, so its BatchNorm layers always use their stored statistics. ``layers`` are indices into
    it whose outputs are φᵢ, weighted by ``layer_weights``.
    """

    def __init__(
        self,
        features: nn.Sequential,
        layers: Sequence[int],
        layer_weights: Sequence[float],
        gram: float = 5000.0,
        pixel: float = 1.0,
    ):
        super().__init__()
        if len(layers) != len(layer_weights):
            raise ValueError(f"{len(layers)} layers but {len(layer_weights)} layer weights")
        if max(layers) >= len(features):
            raise ValueError(f"layer {max(layers)} is beyond the {len(features)} feature layers given")
        self.features = features[: max(layers) + 1]
        for module in self.features:
            if isinstance(module, nn.ReLU):
                # A tapped activation must stay as the ReLU left it, whatever runs after it.
                module.inplace = False
        self.features.requires_grad_(False)
        self.layers = tuple(int(i) for i in layers)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.gram = float(gram)
        self.pixel = float(pixel)
        self.train()

    def train(self, mode: bool = True) -> "VGGFeatureLoss":
        super().train(mode)
        # Training mode would make VGG's BatchNorm use (and update) batch statistics instead of its own.
        self.features.eval()
        return self

    def taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The activations at ``layers`` (in that order) for a batch of [0, 1] images."""
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        found: dict[int, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.layers:
                found[index] = x
        return [found[i] for i in self.layers]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.taps(target)
        loss = self.pixel * F.mse_loss(output, target)
        for weight, got, want in zip(self.layer_weights, self.taps(output), wanted):
            loss = loss + weight * F.mse_loss(got, want)
            loss = loss + self.gram * weight**2 * F.mse_loss(gram_matrix(got), gram_matrix(want))
        return loss


def _features_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features`` part of a vgg16_bn state dict, keyed as in ``vgg16_bn().features``.

    Accepts a whole model's state dict (``features.N...`` and ``classifier...``) or the features' alone.
    """
    prefix = "features."
    if any(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return dict(state)


def _in_first(key: str, depth: int) -> bool:
    """Whether a features state-dict key belongs to one of the first ``depth`` layers."""
    head = key.split(".", 1)[0]
    return head.isdigit() and int(head) < depth


def _initialised(features: nn.Sequential, seed: int) -> nn.Sequential:
    """torchvision's VGG initialisation, drawn layer by layer from a generator seeded with ``seed``.

    Drawing only the features (not the 120M-parameter classifier that ``vgg16_bn()`` would also
    draw first) saves about a second per cell; the first layers get the same values whatever ``depth``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1
    return features


def vgg16_bn_features(net: str, weights: str, seed: int, depth: int = 44) -> nn.Sequential:
    """The first ``depth`` layers of ``vgg16_bn().features`` (in training mode, not yet frozen).

    ``net="random"``: torchvision's default initialisation, drawn from a generator seeded with
    ``seed`` (so a cell gets the same VGG whatever was built before it). ``net="imagenet"``:
    the weights in the file ``weights``, or torchvision's ImageNet checkpoint when it is empty.
    Raises :class:`TechniqueUnavailable` when those weights cannot be had or do not fit.
    """
    from torchvision.models import vgg16_bn  # deferred: importing torchvision slows every command

    # Built without memory or random draws: every tensor is then either drawn or loaded.
    with torch.device("meta"):
        features = vgg16_bn().features[:depth]
    if net == "random":
        return _initialised(features.to_empty(device="cpu"), seed)
    if weights:
        source = str(Path(weights).expanduser())
        state = load_weights_file(Path(source), NAME)
    else:
        source = VGG16_BN_URL.rsplit("/", 1)[-1]
        state = imagenet_weights(VGG16_BN_URL, NAME, OFFLINE_ALTERNATIVE)
    # Cast to float32 so a half-precision file still meets float32 images.
    needed = {
        key: value.float() if value.is_floating_point() else value
        for key, value in _features_state(state).items()
        if _in_first(key, depth)
    }
    # Old checkpoints (the study's among them) predate BatchNorm's num_batches_tracked; torch fills it in.
    expected = [key for key in features.state_dict() if not key.endswith("num_batches_tracked")]
    missing = [key for key in expected if key not in needed]
    if missing:
        raise TechniqueUnavailable(
            f"{NAME}: {source} is not a vgg16_bn state dict (no {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); give a file saved from torchvision's vgg16_bn"
        )
    try:
        features.load_state_dict(needed, assign=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise TechniqueUnavailable(f"{NAME}: {source} does not fit vgg16_bn ({detail[:300]})") from exc
    return features
