"""Choosing how a cell takes its training steps: eager, or captured in a CUDA graph and replayed.

Like the memory layout (:mod:`aeframe.speed.layout`), by measurement: the first cell of each
(device, torch version, technique, input shape, batch size, precision, layout) rehearses every
phase's step both ways on throwaway copies, with the clock stopped, and keeps the faster in the
cache for later cells and runs. The graphed step must also compute what the eager one does: from
the same weights and batches, its loss after the rehearsal's steps must lie within the precision
probe's tolerance of the eager loss; otherwise the cell trains eagerly and says why. A graph has to
be faster by :data:`MIN_GAIN` to be chosen: a gain inside the timing noise is not worth rounding
the numbers differently.

Where a step cannot be graphed at all (no CUDA GPU, fp16, ``--compile``, a capture that fails), the
cell trains eagerly with the reason in its stats (``step_reason``), whether graphs were asked for
(``--cuda-graphs``) or measured.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any, Callable, Sequence

import torch
from torch import nn

from aeframe.cells.record import busy_share
from aeframe.cells.settings import Speed
from aeframe.contract.schedule import Schedule
from aeframe.data.splits import DeviceSplit
from aeframe.speed.cache import SpeedCache, entry_key, finite_number, rates_problem
from aeframe.speed.contention import CpuShareMeter
from aeframe.speed.graphs import EAGER, GRAPHED, GraphUnavailable, obstacle
from aeframe.speed.precision_probe import TRAINED_TOLERANCE
from aeframe.speed.rehearsal import Rehearsal, RehearsalUnavailable, block_steps
from aeframe.speed.utilisation import busy_share as gpu_busy_share

# How the step mode was decided (the record's stats["step_source"]); the layout's words, and one more.
FORCED = "forced"  # --cuda-graphs / --no-cuda-graphs
MEASURED = "measured"
MEASURED_BUSY = "measured on a busy machine"  # not cached: the next cell measures again
CACHED = "cached"
UNAVAILABLE = "unavailable"  # graphs cannot be used here (the reason says why)
UNDECLARED = "not declared"  # a technique of the cell does not declare its step capturable (Technique.cuda_graphs)

MIN_GAIN = 1.05
ROUNDS = 3
# Steps both copies take from the same start before their losses are compared.
AGREEMENT_STEPS = 4


@dataclass(frozen=True)
class StepChoice:
    """How a cell steps, how that was decided, the rates measured (images/s per mode) and, for an
    eager step where a graph was asked for or tried, why it is eager."""

    mode: str = EAGER
    source: str = FORCED
    images_per_second: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    busy: float | None = None  # the GPU's busy share of a step in this mode (aeframe.speed.utilisation)

    @property
    def graphed(self) -> bool:
        return self.mode == GRAPHED

    def stats(self) -> dict[str, Any]:
        """What the cell's record keeps of it."""
        found: dict[str, Any] = {"step_mode": self.mode, "step_source": self.source}
        if self.images_per_second:
            found["step_images_per_second"] = dict(self.images_per_second)
        if self.reason:
            found["step_reason"] = self.reason
        if self.busy is not None:
            found["device_busy_share"] = self.busy
        return found


def step_key(device_name: str, torch_version: str, techniques: list[dict], shape: tuple[int, ...],
             batch_size: int, precision: str, channels_last: bool) -> str:
    """The cache key of a step-mode choice: what the measurement depended on."""
    return entry_key("step", device=device_name, torch=torch_version, techniques=techniques, shape=list(shape),
                     batch_size=batch_size, precision=precision, channels_last=channels_last)


def step_problem(entry: dict[str, Any]) -> str | None:
    """Why a cached step-mode entry cannot be used (the cell's record and the table carry it); None when it can."""
    if entry.get("step_mode") not in (EAGER, GRAPHED):
        return f"step_mode is {json.dumps(entry.get('step_mode'))[:40]}, not {EAGER} or {GRAPHED}"
    if not isinstance(entry.get("reason"), (str, type(None))):
        return "reason is not text"
    busy = entry.get("busy")
    if busy is not None and not (finite_number(busy) and 0 <= busy <= 1):
        return f"busy is {json.dumps(busy)[:40]}, not a share between 0 and 1"
    return rates_problem(entry.get("images_per_second"))


def choose_step(
    model: nn.Module,
    loss_fn: Callable,
    schedule: Schedule,
    speed: Speed,
    device: torch.device,
    train: DeviceSplit,
    cache: SpeedCache,
    key: str,
    undeclared: Sequence[str] = (),
) -> StepChoice:
    """How ``model`` steps under ``schedule`` and ``speed`` (layout already chosen): asked for, cached or
    measured; on a GPU with how busy the step keeps it. ``undeclared`` names the cell's techniques that
    do not declare their step capturable: then only ``--cuda-graphs`` captures it."""
    choice = decide_step(model, loss_fn, schedule, speed, device, train, cache, key, undeclared)
    if device.type != "cuda" or choice.busy is not None:
        return choice
    busy = measure_busy(model, loss_fn, schedule, speed, device, train, choice.graphed)
    if choice.source == MEASURED:
        cache.put(key, {**(cache.get(key) or {}), "busy": busy})
    return replace(choice, busy=busy)


def decide_step(model: nn.Module, loss_fn: Callable, schedule: Schedule, speed: Speed, device: torch.device,
            train: DeviceSplit, cache: SpeedCache, key: str, undeclared: Sequence[str] = ()) -> StepChoice:
    """:func:`choose_step` without the busy share: the mode, asked for, ruled out, cached or measured."""
    if speed.graphs is False:
        return StepChoice(EAGER, FORCED)
    why = obstacle(device, speed.precision, speed.compile)
    if why is not None:
        return StepChoice(EAGER, FORCED if speed.graphs else UNAVAILABLE, reason=why)
    if speed.graphs:
        return StepChoice(GRAPHED, FORCED)
    if undeclared:
        names = ", ".join(repr(name) for name in undeclared)
        who = (f"technique {names} does not declare its step" if len(undeclared) == 1
               else f"techniques {names} do not declare their steps")
        return StepChoice(EAGER, UNDECLARED, reason=f"{who} capturable (Technique.cuda_graphs); --cuda-graphs "
                                                    "captures it anyway")
    found = cache.get(key, step_problem)
    if found is not None:
        return StepChoice(found["step_mode"], CACHED, dict(found.get("images_per_second") or {}), found.get("reason"),
                          found.get("busy"))
    meter = CpuShareMeter(torch.get_num_threads())
    meter.start()
    try:
        rates = measure_steps(model, loss_fn, schedule, speed, device, train)
    except (GraphUnavailable, RehearsalUnavailable) as exc:
        meter.stop()
        choice = StepChoice(EAGER, MEASURED, reason=str(exc))
        cache.put(key, {"step_mode": EAGER, "reason": choice.reason})
        return choice
    meter.stop()
    graphed = rates[GRAPHED] >= MIN_GAIN * rates[EAGER]
    reason = None if graphed else (f"the graphed step was not {MIN_GAIN}x as fast here "
                                   f"({rates[GRAPHED]:.0f} vs {rates[EAGER]:.0f} images/s)")
    mode = GRAPHED if graphed else EAGER
    if busy_share(meter.share()):
        return StepChoice(mode, MEASURED_BUSY, rates, reason)
    cache.put(key, {"step_mode": mode, "images_per_second": rates, "reason": reason})
    return StepChoice(mode, MEASURED, rates, reason)


def measure_busy(model: nn.Module, loss_fn: Callable, schedule: Schedule, speed: Speed, device: torch.device,
                 train: DeviceSplit, graphed: bool) -> float | None:
    """The GPU's busy share of the step in the phase with the largest share of the budget; None where it
    cannot be measured (a model that cannot be copied, a profiler that sees no kernels)."""
    index = max(range(len(schedule.phases)), key=lambda i: schedule.phases[i].fraction)
    try:
        rehearsal = Rehearsal(model, loss_fn, schedule, index, speed, device,
                              train.view(schedule.phases[index].image_size))
        if graphed:
            rehearsal.graph()
        return gpu_busy_share(rehearsal)
    except (GraphUnavailable, RehearsalUnavailable):
        return None


def measure_steps(model: nn.Module, loss_fn: Callable, schedule: Schedule, speed: Speed, device: torch.device,
                  train: DeviceSplit) -> dict[str, float]:
    """Images/s of each phase's step eager and graphed, interleaved in rounds (median per phase, weighted
    by the phases' fractions). Raises GraphUnavailable where a phase cannot be captured, or where the
    graphed step's loss strays from the eager one's."""
    per_step: dict[str, list[list[float]]] = {EAGER: [], GRAPHED: []}
    for i, phase in enumerate(schedule.phases):
        images = train.view(phase.image_size)
        eager = Rehearsal(model, loss_fn, schedule, i, speed, device, images)
        graphed = Rehearsal(model, loss_fn, schedule, i, speed, device, images)
        graphed.graph()
        eager.steps(AGREEMENT_STEPS)
        graphed.steps(AGREEMENT_STEPS)
        _check_agreement(eager.last_loss, graphed.last_loss, phase.name)
        steps = block_steps(min(eager.steps(1), graphed.steps(1)))
        times: dict[str, list[float]] = {EAGER: [], GRAPHED: []}
        for round_ in range(ROUNDS):
            order = (eager, graphed) if round_ % 2 == 0 else (graphed, eager)
            for rehearsal in order:
                times[EAGER if rehearsal is eager else GRAPHED].append(rehearsal.steps(steps) / steps)
        for mode in per_step:
            per_step[mode].append(times[mode])
    fractions = [phase.fraction for phase in schedule.phases]
    total = sum(fractions) or 1.0
    return {mode: schedule.batch_size / max(sum(f / total * median(t) for f, t in zip(fractions, per_step[mode])),
                                            1e-9)
            for mode in per_step}


def _check_agreement(eager: torch.Tensor | None, graphed: torch.Tensor | None, phase: str) -> None:
    if eager is None or graphed is None:
        return
    a, b = float(eager), float(graphed)
    if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > TRAINED_TOLERANCE * max(abs(a), 1e-12):
        raise GraphUnavailable(f"the graphed step's loss strayed from the eager step's in phase {phase!r} "
                               f"({b:.6g} vs {a:.6g} after {AGREEMENT_STEPS} steps)")
