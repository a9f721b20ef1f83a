"""A cosine learning-rate curve with a linear warm-up, in place of the study's one-cycle.

Loshchilov and Hutter (2017, SGDR) decay the rate along half a cosine; Goyal et al. (2017) warm it
up linearly first. It provides the curve only: the phases and their peak rates stay whoever's they
are, so it combines with techniques that declare phases or rates (in each phase the rate warms up and
decays again). Adam's beta1 keeps the optimizer's own value instead of one-cycle's curve.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

from aeframe import CellContext, LrCurve, Param, Technique, hookimpl


def warm_cosine(q: float, max_lr: float, warmup: float, final: float) -> float:
    """The rate at phase progress ``q``: linear from 0 to ``max_lr`` over the first ``warmup`` of the
    phase, then half a cosine down to ``final * max_lr``."""
    if q < warmup:
        return max_lr * q / warmup
    t = (q - warmup) / (1 - warmup)
    low = final * max_lr
    return low + (max_lr - low) * (1 + math.cos(math.pi * t)) / 2


class Cosine(Technique):
    name = "cosine"
    title = "Cosine Schedule"
    description = "each phase's learning rate warms up linearly, then decays along half a cosine"
    base = "baseline"
    params = (
        Param("warmup", float, 0.05, "share of each phase spent warming the rate up linearly from 0, in [0, 1)"),
        Param("final", float, 0.0, "the rate at the end of each phase, as a share of its peak, in [0, 1]"),
    )
    cuda_graphs = True  # the rate is set from the host between steps, as for one-cycle

    def check_params(self, params: dict[str, Any]) -> None:
        warmup, final = params["warmup"], params["final"]
        if not (math.isfinite(warmup) and 0 <= warmup < 1):
            raise ValueError(f"warmup={warmup:g} must lie in [0, 1): it is a share of each phase")
        if not (math.isfinite(final) and 0 <= final <= 1):
            raise ValueError(f"final={final:g} must lie in [0, 1]: it is a share of the peak rate")

    def build_lr_curve(self, ctx: CellContext) -> LrCurve:
        warmup, final = ctx.params["warmup"], ctx.params["final"]
        return LrCurve(partial(warm_cosine, warmup=warmup, final=final),
                       name=f"cosine, {warmup:.0%} linear warm-up, down to {final:g} of the peak")


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``cosine``."""
    register(Cosine())
