"""Gradient clipping: rescale the gradients whenever their global norm exceeds a threshold.

Pascanu, Mikolov and Bengio (2013) introduced it against exploding gradients; it acts after the
backward pass and before the optimizer's step (the gradients unscaled under fp16), and records how
often it clipped and the gradients' norm.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from aeframe import Param, Technique, TrainingState, hookimpl


class GradClip(Technique):
    name = "grad-clip"
    title = "Gradient Clipping"
    description = "rescales the gradients to a global norm of at most max_norm before each optimizer step"
    base = "baseline"
    params = (Param("max_norm", float, 1.0, "the largest global L2 norm the gradients keep; larger ones are "
                    "scaled down to it"),)
    # clip_grad_norm_ without error_if_nonfinite computes on the device and never waits for it.
    cuda_graphs = True

    def check_params(self, params: dict[str, Any]) -> None:
        if not (math.isfinite(params["max_norm"]) and params["max_norm"] > 0):
            raise ValueError(f"max_norm={params['max_norm']:g} must be a positive number")

    def on_after_backward(self, state: TrainingState) -> None:
        import torch

        max_norm = state.params["max_norm"]
        norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), max_norm, foreach=True)
        state.record("grad_norm", norm)
        state.record("clipped_fraction", (norm > max_norm).float())


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``grad-clip``."""
    register(GradClip())
