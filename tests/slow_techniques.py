"""A third-party technique whose training step is slow: its model (one convolution, so that everything but
the sleep costs next to nothing, even on a busy machine) sleeps in each forward of a training step; the
tests register this module through an entry point."""
from __future__ import annotations

import time

import torch
from torch import nn

from aeframe import Param, Technique, hookimpl


class SleepyConv(nn.Module):
    """A 3x3 convolution keeping the input's shape, sleeping ``seconds`` in a training step's forward (training
    mode with gradients: not in the output checks before training, nor in evaluation)."""

    def __init__(self, channels: int, seconds: float):
        super().__init__()
        self.conv, self.seconds = nn.Conv2d(channels, channels, 3, padding=1), seconds

    def forward(self, x):
        if self.training and torch.is_grad_enabled() and self.seconds:
            time.sleep(self.seconds)
        return torch.sigmoid(self.conv(x))


class SlowStep(Technique):
    """A one-convolution model whose training steps each take ``seconds`` longer; the Baseline's loss and schedule."""

    name, title, base = "slow-step", "Slow Step", "baseline"
    params = (Param("seconds", float, 0.0, "how long each training step's forward sleeps"),)

    def build_model(self, ctx):
        return SleepyConv(ctx.shape[0], ctx.params["seconds"])


@hookimpl
def register_techniques(register):
    register(SlowStep())
