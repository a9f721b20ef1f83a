"""The study's ResNet34 autoencoder (seed-protocol.md section 2.5), its parameter groups and unfreezing.

The encoder is torchvision's ResNet34 without its pooling and classifier (conv1 ... layer4), then
a max-and-average concat pool (1024-d for 512 channels; on a 32x32 input the map is 1x1, so the
two halves are equal); the decoder is the Baseline's, from 1024 features. The model is
21,284,672 + 1,577,433 parameters at 3x32x32. Imported only when a model is built: it needs torch
(and torchvision), which registering the techniques must not import.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from aeframe_builtins.techniques.layers import Autoencoder, study_decoder

LATENT = 1024
BODY_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
CHANNELS = "the ResNet34 encoder takes grey or RGB images, not {} channels"


class ResnetBody(nn.Sequential):
    """ResNet34's conv1 ... layer4 under torchvision's names, so its state dict keys are torchvision's."""


class ConcatPool(nn.Module):
    """Global max pool and global average pool, concatenated on channels (max first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)], dim=1)


class GreyToRGB(nn.Module):
    """Repeats a single grey channel three times: the body's first convolution wants RGB."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


def resnet34_body() -> ResnetBody:
    """A randomly initialised ResNet34 without avgpool and fc (torchvision's init, global RNG)."""
    from torchvision.models import resnet34  # deferred: importing torchvision slows every command

    children = dict(resnet34(weights=None).named_children())
    return ResnetBody(OrderedDict((name, children[name]) for name in BODY_LAYERS))


def resnet_encoder(channels: int) -> nn.Sequential:
    """The body, then the concat pool and a flatten to 1024 features."""
    layers: list[tuple[str, nn.Module]] = [("grey_to_rgb", GreyToRGB())] if channels == 1 else []
    layers += [("body", resnet34_body()), ("pool", ConcatPool()), ("flatten", nn.Flatten())]
    return nn.Sequential(OrderedDict(layers))


def resnet_autoencoder(shape: tuple[int, int, int]) -> Autoencoder:
    """The study's ResNet34 autoencoder for images of ``shape`` (C, H, W), C being 1 or 3."""
    if shape[0] not in (1, 3):
        raise ValueError(CHANNELS.format(shape[0]))
    decoder = study_decoder(shape, LATENT)  # first, so that an unusable shape fails before the big body is built
    return Autoencoder(shape[0], resnet_encoder(shape[0]), decoder)


def find_body(model: nn.Module) -> ResnetBody:
    """The one ResNet body inside ``model`` (which other techniques' wrappers may have wrapped)."""
    bodies = [m for m in model.modules() if isinstance(m, ResnetBody)]
    if len(bodies) != 1:
        raise ValueError(f"expected one ResNet34 body in the model, found {len(bodies)}")
    return bodies[0]


def study_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The study's 10 parameter groups: conv1, bn1, relu, maxpool, layer1 ... layer4, concat pool, decoder.

    relu, maxpool and the pool hold no parameters; their groups stay empty (AdamW accepts empty
    groups) so that every real group keeps the rate the study gave it. The last group holds every
    parameter outside the body: the decoder, plus whatever a wrapping technique added.
    """
    body = find_body(model)
    groups = [list(getattr(body, name).parameters()) for name in BODY_LAYERS]
    groups.append([])  # the concat pool and flatten
    in_body = {id(p) for p in body.parameters()}
    groups.append([p for p in model.parameters() if id(p) not in in_body])
    return groups


def unfreeze(model: nn.Module) -> None:
    """Make every parameter trainable again (fastai's ``unfreeze()``)."""
    model.requires_grad_(True)
