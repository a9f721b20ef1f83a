"""Two third-party techniques that change the loss, to combine with the VAE example's models: one
that replaces the reconstruction loss (L1) and one that wraps it (a scale). Like a plugin, it imports
nothing but ``aeframe``; the tests register it through an entry point."""
from __future__ import annotations

import torch.nn.functional as F

from aeframe import Param, Technique, hookimpl


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
    register(L1Loss())
    register(LossScale())
