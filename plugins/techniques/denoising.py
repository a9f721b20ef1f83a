"""Denoising (Vincent et al., 2008): the base technique's model fed noisy images while it trains.

The wrapper is :class:`aeframe_builtins.techniques.corrupt_inputs.GaussianNoise`. The loss compares the
output with the clean image, so the model learns to remove the noise; evaluation adds none.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl

if TYPE_CHECKING:
    from torch import nn


class Denoising(Technique):
    """Wraps the model: Gaussian noise on the training inputs; the target and the evaluation stay clean."""

    name = "denoising"
    cuda_graphs = True  # the noise is drawn on the device, from torch's generator
    title = "Denoising"
    description = "trains on inputs with Gaussian noise added; the target and the evaluation stay clean"
    base = "baseline"
    params = (Param("noise", float, 0.1, "standard deviation of the noise added to training inputs, in [0, 1] "
                    "pixel units (0 turns it off)"),)

    def check_params(self, params: dict[str, Any]) -> None:
        noise = params["noise"]
        if not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise={noise:g}: give a standard deviation of 0 or more")

    def wrap_model(self, model: nn.Module, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.corrupt_inputs import GaussianNoise

        return GaussianNoise(model, ctx.params["noise"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``denoising``."""
    register(Denoising())
