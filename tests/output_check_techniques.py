"""Third-party techniques whose models misbehave in one mode only, so that a check of the other mode alone
lets them through. Like a plugin, it imports nothing but ``aeframe`` (and torch); the tests register it
through an entry point."""
from __future__ import annotations

import torch
from torch import nn

from aeframe import Technique, hookimpl


class _BroadcastsInTraining(nn.Module):
    """The right shape in eval mode; in training mode one value per image and channel, (B, C, 1, 1),
    which an MSE loss broadcasts against the images instead of refusing."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out.mean(dim=(2, 3), keepdim=True) if self.training else out


class _NanInTraining(nn.Module):
    """Finite in eval mode, NaN in training mode from the very first forward."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.training else out


class _NanInEvalOnceTrained(nn.Module):
    """Trains normally (finite loss), but once it has taken a training step its eval-mode output is NaN:
    the way a model whose running statistics blew up looks at evaluation."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.trained = inner, False

    def forward(self, x):
        out = self.inner(x)
        if self.training and torch.is_grad_enabled():
            self.trained = True
        return out * float("nan") if not self.training and self.trained else out


class Wrapping(Technique):
    """A technique that wraps the Baseline's model in ``wrapper``."""

    base = "baseline"

    def __init__(self, name: str, title: str, description: str, wrapper: type[nn.Module]):
        self.name, self.title, self.description, self.wrapper = name, title, description, wrapper

    def wrap_model(self, model, ctx):
        return self.wrapper(model)


@hookimpl
def register_techniques(register):
    register(Wrapping("broadcasts", "Broadcasts", "returns (B, C, 1, 1) in training mode, the input's shape in eval "
                      "mode", _BroadcastsInTraining))
    register(Wrapping("nan-in-training", "NaN In Training", "returns NaN in training mode only", _NanInTraining))
    register(Wrapping("nan-in-eval", "NaN In Eval", "returns NaN in eval mode once it has trained",
                      _NanInEvalOnceTrained))
