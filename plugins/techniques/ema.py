"""EMA: evaluate an exponential moving average of the weights instead of the last weights.

Polyak and Juditsky (1992) averaged the iterates of stochastic approximation; the exponential form,
with its decay warmed up over the first steps (as TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``), is what modern image models train with. It acts only at training events: after
every optimizer step it moves the average toward the live weights, and around every evaluation it
puts the average in the model and the live weights back after. Training itself is unchanged.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterator

from aeframe import Param, Technique, TrainingState, hookimpl

if TYPE_CHECKING:
    import torch

NAME = "ema"


class EMA(Technique):
    name = NAME
    title = "EMA"
    description = "evaluates an exponential moving average of the weights (decay warmed up over the first steps)"
    base = "baseline"
    params = (Param("decay", float, 0.999, "how much of the average each step keeps, in (0, 1); at step n the "
                    "decay is min(decay, (1 + n) / (10 + n)), so early averages are not held at the initial weights"),)
    # The update is tensor work only: the step count it warms up with lives on the device.
    cuda_graphs = True

    def check_params(self, params: dict[str, Any]) -> None:
        decay = params["decay"]
        if not (math.isfinite(decay) and 0 < decay < 1):
            raise ValueError(f"decay={decay:g} must lie strictly between 0 and 1 (0.999 keeps 99.9% of the average "
                             "at each step)")

    def on_train_start(self, state: TrainingState) -> None:
        self._track(state)

    def on_phase_start(self, state: TrainingState) -> None:
        # A phase may rebuild part of the model (new tensors): the average starts again for those.
        if [id(t) for t in self.live] != [id(t) for t in _averaged(state.model)]:
            self._track(state)

    def _track(self, state: TrainingState) -> None:
        import torch

        self.live = _averaged(state.model)
        self.average = [t.detach().clone() for t in self.live]
        self.updates = torch.zeros((), device=state.device)

    def on_after_step(self, state: TrainingState) -> None:
        import torch

        self.updates.add_(1)
        decay = torch.clamp((1 + self.updates) / (10 + self.updates), max=state.params["decay"])
        # average = decay * average + (1 - decay) * live, for every tensor at once.
        torch._foreach_mul_(self.average, decay)
        torch._foreach_add_(self.average, torch._foreach_mul(self.live, 1 - decay))

    def on_epoch_end(self, state: TrainingState) -> None:
        import torch

        # How far the average is from the live weights, relative to their size: 0 means EMA changes nothing.
        gap = torch.stack([torch.linalg.vector_norm(a - t.detach()) for a, t in zip(self.average, self.live)])
        size = torch.stack([torch.linalg.vector_norm(t.detach()) for t in self.live])
        state.record("ema_distance", torch.linalg.vector_norm(gap) / torch.linalg.vector_norm(size).clamp_min(1e-12))

    def around_evaluation(self, state: TrainingState) -> Iterator[None]:
        import torch

        kept = [t.detach().clone() for t in self.live]
        with torch.no_grad():
            torch._foreach_copy_(self.live, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, kept)


def _averaged(model: torch.nn.Module) -> list[torch.Tensor]:
    """The tensors averaged: every floating-point parameter and buffer (batch norm's running statistics
    follow the weights they were measured with)."""
    return [t for t in model.state_dict(keep_vars=True).values() if t.is_floating_point()]


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``ema``."""
    register(EMA())
