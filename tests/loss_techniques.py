"""A third-party technique that wraps the reconstruction loss, to combine with the built-in VAE and
VQ-VAE (the one that replaces it is the built-in ``l1-loss``). Like a plugin, it imports nothing but
``aeframe``; the tests register it through an entry point."""
from __future__ import annotations

from aeframe import Param, Technique, hookimpl


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
    register(LossScale())
