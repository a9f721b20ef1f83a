"""Pixel Shuffle (seed-protocol.md section 2.3): the Baseline with a sub-pixel convolution decoder.

The model is in :mod:`aeframe_builtins.techniques.pixel_shuffle_decoder`; the loss and the schedule are the
Baseline's, whose second-run rate (1e-3) is the one the study chose for Pixel Shuffle too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from aeframe import CellContext, Param, Technique, hookimpl

if TYPE_CHECKING:
    from torch import nn


class PixelShuffle(Technique):
    name = "pixel-shuffle"
    cuda_graphs = True
    title = "Pixel Shuffle"
    in_study = True
    description = "the Baseline's encoder with a decoder of 1x1 convs, ReLU, PixelShuffle and blur"
    base = "baseline"
    params = (
        Param(
            "icnr",
            bool,
            False,
            "apply real ICNR initialisation; false reproduces the study, whose ICNR was undone by weight norm",
        ),
    )

    def build_model(self, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.pixel_shuffle_decoder import pixel_shuffle_autoencoder

        return pixel_shuffle_autoencoder(ctx.shape, icnr=ctx.params["icnr"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``pixel-shuffle``."""
    register(PixelShuffle())
