"""Training steps on a throwaway copy of a cell's model, taken while the training clock is stopped.

Two things need them: measuring which of several equal-result settings is fastest here
(:mod:`aeframe.speed.layout`), and the one-time set-up every cell gets before its clock starts
(:mod:`aeframe.speed.preparation`): the first steps at a new input shape pay for oneDNN's kernel
creation, cuDNN's algorithm search and the allocator's growth, and without a rehearsal those costs
would land on whichever cell happens to run first. A copy is stepped, never the cell's own model;
the caller keeps the random number generators as they were (``torch.random.fork_rng``).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
from torch import nn

from aeframe.cells.settings import Speed
from aeframe.contract.schedule import Schedule
from aeframe.data.splits import to_unit
from aeframe.speed.graphs import GraphUnavailable, TrainingSteps
from aeframe.speed.numerics import speed_model
from aeframe.speed.preparation_limit import checkpoint, rehearsed_step
from aeframe.speed.step import Stepper, synchronize

# A timed block of steps lasts at least this long (more steps for fast models), so that timer and
# launch jitter stay small against it, with MIN_STEPS to MAX_STEPS steps.
MIN_BLOCK_SECONDS = 0.05
MIN_STEPS = 2
MAX_STEPS = 64


def block_steps(step_seconds: float) -> int:
    """How many steps of ``step_seconds`` each make one timed block (see MIN_BLOCK_SECONDS)."""
    return max(MIN_STEPS, min(MAX_STEPS, math.ceil(MIN_BLOCK_SECONDS / max(step_seconds, 1e-6))))


class RehearsalUnavailable(Exception):
    """The model cannot be copied (a plugin's model holding something deepcopy refuses)."""


class Rehearsal:
    """A copy of ``model`` as it is during phase ``phase_index`` of ``schedule``, in the layout and
    precision of ``speed``, with an optimizer of its own, stepping on one real batch of ``images``
    (uint8, already at the phase's size) with the schedule's augmentation."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        schedule: Schedule,
        phase_index: int,
        speed: Speed,
        device: torch.device,
        images: torch.Tensor,
    ):
        try:
            duplicate = copy.deepcopy(model)
        except Exception as exc:
            raise RehearsalUnavailable(f"the model cannot be copied ({type(exc).__name__}: {exc})") from exc
        self.model = speed_model(duplicate, speed, device)
        # A phase may freeze or unfreeze layers, or change the output's scale: replay the phases up to this one.
        for phase in schedule.phases[: phase_index + 1]:
            if phase.on_start is not None:
                phase.on_start(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The rate does not change the work of a step; the smallest keeps the copy's numbers tame.
        rate = min(schedule.phases[phase_index].lrs())
        self.optimizer = schedule.make_optimizer([{"params": params, "lr": rate}]) if params else None
        self.loss_fn = loss_fn
        self.augment = schedule.augment
        self.device = device
        self.stepper = Stepper.of(speed, device)
        self.runner = TrainingSteps(self.model, loss_fn, self.stepper, graphed=False)
        self.last_loss: torch.Tensor | None = None
        # Gathered by index, as training gathers its batches.
        self.images = images
        self.index = torch.arange(min(schedule.batch_size, images.shape[0]), device=images.device)
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.model.train()
        checkpoint()  # a copy of a large model, or a slow on_start, is part of the preparation's time too

    def steps(self, count: int) -> float:
        """Run ``count`` training steps; their device-synchronised duration in seconds."""
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(count):
            batch = self._batch()
            self.last_loss = self.runner.step(self.optimizer, batch)[0].detach()
            rehearsed_step()  # a slow step must not run the preparation long past its limit
        synchronize(self.device)
        seconds = time.perf_counter() - start
        checkpoint()  # after the clock is read: a progress line costs this block nothing
        return seconds

    def graph(self) -> None:
        """Capture this rehearsal's step in a CUDA graph; later :meth:`steps` replay it. Raises
        GraphUnavailable (with the reason) where it cannot be captured."""
        if self.optimizer is None:
            raise GraphUnavailable("the model has nothing to train")
        self.runner.graphed = True
        self.runner.capture(self.optimizer, self._batch())
        if not self.runner.graphed:
            raise GraphUnavailable(self.runner.reason or "the capture failed")

    def _batch(self) -> torch.Tensor:
        batch = to_unit(self.images[self.index])
        return self.augment(batch, self.generator) if self.augment is not None else batch

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor) -> None:
        """One evaluation-mode forward of ``images`` (uint8), as evaluation runs the model."""
        self.model.eval()
        self.model(to_unit(images))
        self.model.train()
        synchronize(self.device)
        checkpoint()

