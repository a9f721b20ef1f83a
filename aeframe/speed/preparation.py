"""Everything a cell does once before its training clock starts, the same way for every cell.

The policy (docs/speed.md, "Equal treatment"): a cell's clock measures its training steps only. So
before it starts, and whether the cell is the first of its run or the tenth:

1. the training and test images are made at every size a phase trains at (progressive resizing's
   downsized copies), so no cell pays for a resize on its clock;
2. the memory layout is decided (:mod:`aeframe.speed.layout`), by measurement unless it is forced;
   then, on a GPU, whether the step is captured in a CUDA graph (:mod:`aeframe.speed.step_mode`);
3. a throwaway copy of the model takes a few training steps in every phase, and one evaluation
   batch, in the chosen settings, so that the process's one-off set-up for those shapes (kernel
   creation, cuDNN's algorithm search, allocator growth) is paid here.

Random number generators are left as they were: the cell trains exactly as it would have without
this preparation. Its duration is kept apart (the record's ``prepare_seconds``). It is watched
(:mod:`aeframe.speed.preparation_limit`): a slow one writes progress lines, and one that passes
its limit fails the cell.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn

from aeframe.cells.settings import Speed
from aeframe.contract.schedule import Schedule
from aeframe.data.splits import EVAL_BATCH, CellData
from aeframe.speed.cache import SpeedCache
from aeframe.speed.layout import FORCED, UNMEASURED, LayoutChoice, choose_layout
from aeframe.speed.preparation_limit import (
    LAYOUT_ADVICE,
    STEP_MODE_ADVICE,
    PreparationWatch,
    checkpoint,
    enter,
    watching,
)
from aeframe.speed.rehearsal import Rehearsal, RehearsalUnavailable
from aeframe.speed.step_mode import StepChoice, choose_step
from aeframe.speed.step import synchronize

# Training steps per phase of the warm-up rehearsal: the first pays the set-up, the second
# runs with everything created (some allocators and autotuners settle on the second call).
WARM_UP_STEPS = 2


@dataclass(frozen=True)
class CellPreparation:
    """What a cell's preparation decided and how long it took."""

    speed: Speed  # the run's settings with this cell's layout filled in
    layout: LayoutChoice
    seconds: float
    step: StepChoice = StepChoice()


def prepare_cell(
    model: nn.Module,
    loss_fn: Callable,
    schedule: Schedule,
    speed: Speed,
    data: CellData,
    device: torch.device,
    cache: SpeedCache,
    layout_key: str,
    step_key: Callable[[bool], str] | None = None,
    undeclared: Sequence[str] = (),
    watch: PreparationWatch | None = None,
) -> CellPreparation:
    """Prepare one cell (see the module's docstring); ``model`` is the technique's, before the settings apply.

    ``step_key(channels_last)`` gives the cache key of the step-mode choice once the layout is known;
    without it the step is eager. ``undeclared``: the cell's techniques that do not declare their step
    capturable (see :func:`aeframe.speed.step_mode.choose_step`). ``watch`` writes the progress lines
    and raises PreparationTooLong past the cell's limit; without it nothing is watched."""
    synchronize(device)
    start = time.perf_counter()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), watching(watch):
        enter("making resized copies of the images")
        for phase in schedule.phases:
            data.train.view(phase.image_size)
            data.test.view(phase.image_size)
            checkpoint()
        try:
            if speed.tuned_layout:
                enter("measuring the memory layout", LAYOUT_ADVICE)
                layout = choose_layout(model, loss_fn, schedule, speed, device, data.train, cache, layout_key)
            else:
                layout = LayoutChoice(bool(speed.channels_last), FORCED)
            chosen = replace(speed, channels_last=layout.channels_last)
            if step_key is not None and device.type == "cuda":  # elsewhere nothing is measured: graphs need CUDA
                enter("measuring the step mode (CUDA graph or eager) and the GPU's busy share",
                       STEP_MODE_ADVICE if speed.graphs is None else "")
            step = (choose_step(model, loss_fn, schedule, chosen, device, data.train, cache,
                                step_key(chosen.channels_last), undeclared)
                    if step_key is not None else StepChoice())
            enter(f"warming up ({WARM_UP_STEPS} training steps per phase)")
            _warm_up(model, loss_fn, schedule, chosen, data, device)
        except RehearsalUnavailable as exc:
            # Nothing to measure or warm up with: every such cell trains untuned and unwarmed alike.
            layout = LayoutChoice(bool(speed.channels_last), FORCED if not speed.tuned_layout else UNMEASURED)
            chosen = replace(speed, channels_last=layout.channels_last)
            step = StepChoice(reason=f"not rehearsed: {exc}") if speed.graphs is not False else StepChoice()
    synchronize(device)
    return CellPreparation(chosen, layout, time.perf_counter() - start, step)


def _warm_up(model: nn.Module, loss_fn: Callable, schedule: Schedule, speed: Speed, data: CellData,
             device: torch.device) -> None:
    for i, phase in enumerate(schedule.phases):
        rehearsal = Rehearsal(model, loss_fn, schedule, i, speed, device, data.train.view(phase.image_size))
        rehearsal.steps(WARM_UP_STEPS)
        rehearsal.evaluate(data.test.view(phase.image_size)[:EVAL_BATCH])
