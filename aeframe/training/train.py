"""One cell's training loop: step the composed model, loss and schedule until the budget ends.

Per step there is no host synchronisation on a GPU: the loss is summed on the device and read at
the end of each epoch (or when the progress display is due), and the clock is read by the budget
tracker only as often as it needs to stop within one step of a time limit (and about four times a
second otherwise). At those reads, when the device has just been synchronised anyway, the summed loss
is checked: a NaN or infinite loss stops the cell within a few steps (on a CPU, at the very step).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from aeframe.cells.budget import Budget
from aeframe.cells.settings import Speed
from aeframe.contract.output import RECONSTRUCTION
from aeframe.contract.schedule import Schedule
from aeframe.contract.technique import CellContext
from aeframe.data.splits import EVAL_BATCH, DeviceSplit, epoch_order, to_unit
from aeframe.errors import AeframeError
from aeframe.speed.contention import other_gpu_processes
from aeframe.speed.numerics import warm_up
from aeframe.speed.graphs import StepEvents, TrainingSteps, set_beta1, set_rate
from aeframe.speed.step import Stepper, synchronize
from aeframe.speed.step_mode import StepChoice
from aeframe.training.clock import BudgetTracker, Clock
from aeframe.training.evaluate import timed_evaluate
from aeframe.training.events import CellEvents
from aeframe.training.lr_find import range_test

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ProgressSink(Protocol):
    def due(self) -> bool: ...

    def update(self, *, epoch: int, step: int, loss: float, progress: float, left: str) -> None: ...


@dataclass
class TrainResult:
    steps: int = 0
    epochs: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)
    diverged: str | None = None
    final_size: int | None = None
    lr_tests: list[dict] = field(default_factory=list)
    compile_seconds: float | None = None
    step_mode: str | None = None
    step_reason: str | None = None
    capture_seconds: float | None = None
    graphs_captured: int | None = None
    gpu_peak_memory: int | None = None
    cpu_share: float | None = None  # see aeframe.speed.contention
    cpu_share_measure: str | None = None
    gpu_other_processes: int | None = None


def train(
    model: nn.Module,
    loss_fn: Loss,
    schedule: Schedule,
    train_split: DeviceSplit,
    test_split: DeviceSplit,
    budget: Budget,
    context: CellContext,
    generator: torch.Generator,
    progress: ProgressSink | None = None,
    find_lr: bool = False,
    speed: Speed = Speed(),
    step: StepChoice = StepChoice(),
    events: CellEvents | None = None,
) -> TrainResult:
    """Train ``model`` in place under ``budget`` and return what happened, epoch by epoch.

    With ``find_lr``, phases marked ``find_lr`` take their peak rate from a range test run when they
    begin; the test's time is kept off the training clock and reported in ``lr_tests``.

    ``model`` is already prepared for ``speed`` (see :mod:`aeframe.speed.numerics`); here the loss runs
    under the same autocast (on the model's fp32 output), fp16 gets a gradient scaler, and a
    compiled model is warmed up on the first batch with the clock stopped (``compile_seconds``).
    With ``step`` graphed, each phase's step is captured in a CUDA graph when the phase begins, with the
    clock stopped (``capture_seconds``), and replayed; a capture that fails makes the rest eager, the
    reason kept (``step_reason``).

    ``events`` are the techniques that act at training events: called at each (see
    :mod:`aeframe.contract.events`), their diagnostics averaged into each epoch's point of the curve.
    Each epoch's evaluation runs inside their ``around_evaluation``; the caller wraps the final one.
    """
    # The data: one permutation per epoch, cut to whole batches.
    device = context.device
    steps_per_epoch = len(train_split) // schedule.batch_size
    if steps_per_epoch == 0:
        raise AeframeError(f"{context.dataset} has {len(train_split)} training images, fewer than one batch of "
                           f"{schedule.batch_size}")
    # The schedule, the step, the clock.
    phases = _Phases(schedule, model)
    events = events if events is not None else CellEvents((), model, device)
    in_steps = events.acting_in_steps()
    steps = TrainingSteps(model, loss_fn, Stepper.of(speed, device), step.graphed, step.reason,
                          StepEvents(events.after_backward, events.after_step, events.kept) if in_steps else StepEvents())
    clock = Clock(device)
    tracker = BudgetTracker(budget, steps_per_epoch, clock, every_step=device.type != "cuda")
    result = TrainResult()
    neighbours = _GpuNeighbours(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = epoch = 0
    model.train()
    clock.start()
    events.fire("on_train_start")
    while True:
        losses, stop = _EpochLosses(device), False
        for indices in epoch_order(len(train_split), schedule.batch_size, generator, device):
            index, q = schedule.locate(tracker.progress(step))
            if index != phases.index:
                if phases.index >= 0:
                    events.fire("on_phase_end")
                tune = _range_tester(model, loss_fn, schedule, schedule.phases[index], train_split, context, clock,
                                     result) if find_lr and schedule.phases[index].find_lr else None
                phases.enter(index, tune)
                if tune is not None:
                    tracker.pause(step)
                events.update(optimizer=phases.optimizer, phase=schedule.phases[index].name, phase_index=index,
                              step=step, progress=tracker.progress(step))
                events.fire("on_phase_start")
            phases.set_rates(q)
            images = to_unit(train_split.view(phases.size)[indices])
            if schedule.augment is not None:
                images = schedule.augment(images, generator)
            if speed.compile and step == 0:
                result.compile_seconds = _compile_off_the_clock(model, loss_fn, images, test_split, phases.size,
                                                                speed, device, clock)
                tracker.pause(step)
            if steps.needs_capture(phases.optimizer, images):
                result.capture_seconds = (result.capture_seconds or 0.0) + _capture_off_the_clock(
                    steps, phases.optimizer, images, clock)
                tracker.pause(step)
            if in_steps:
                events.update(step=step, progress=tracker.progress(step))
            loss, parts = steps.step(phases.optimizer, images)
            losses.add(loss, parts)
            step += 1
            stop = tracker.exhausted(step)
            # Only where the device waited for the clock anyway: a check of its own would stall the GPU.
            if tracker.synchronised and not losses.finite():
                stop = True
            if progress is not None and (stop or progress.due()):
                progress.update(epoch=epoch + 1, step=step, loss=float(loss.detach()),
                                progress=tracker.progress(step), left=tracker.left(step))
            if stop:
                break
        # The curve: each epoch's mean loss and its terms, and the test MSE, off the clock.
        epoch += 1
        last = stop or tracker.exhausted(step)
        # On the clock: what a technique does at the end of an epoch or of training is part of its training.
        events.update(step=step, epoch=epoch, progress=tracker.progress(step))
        events.fire("on_epoch_end")
        if last:
            events.fire("on_phase_end")
            events.fire("on_train_end")
        clock.stop()
        with events.evaluating():
            _, test_mse, seconds = timed_evaluate(model, test_split, (), context, phases.size)
        result.eval_seconds += seconds
        point = losses.point(epoch, step, schedule.phases[phases.index].name, test_mse, clock.read())
        diagnostics = events.diagnostics.take()
        if diagnostics:
            point["diagnostics"] = diagnostics
        result.curve.append(point)
        if not math.isfinite(point["train_loss"]):
            result.diverged = f"training loss became {point['train_loss']} by step {step} (epoch {epoch})"
            break
        if last:
            break
        clock.start()
        tracker.pause(step)
    result.steps, result.epochs = step, step / steps_per_epoch
    result.train_seconds, result.final_size = clock.read(), phases.size
    result.cpu_share, result.cpu_share_measure = clock.cpu.share(), clock.cpu.method
    result.step_mode, result.step_reason = steps.mode, steps.reason
    result.graphs_captured = steps.captured or None
    if device.type == "cuda":
        result.gpu_peak_memory = torch.cuda.max_memory_allocated(device)
    result.gpu_other_processes = neighbours.most()
    return result


class _Phases:
    """The schedule's phase in progress: its optimizer, peak rates and image size."""

    def __init__(self, schedule: Schedule, model: nn.Module) -> None:
        self.schedule = schedule
        self.model = model
        self.index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.max_lrs: list[float] = []
        self.size: int | None = None

    def enter(self, index: int, tune: Callable[[list, list[float]], list[float]] | None = None) -> None:
        """Start phase ``index``: its ``on_start``, then its optimizer (new or kept) and peak rates.

        ``tune`` may replace the peak rates (``--lr find``); it sees the phase's parameter groups.
        """
        phase = self.schedule.phases[index]
        if phase.on_start is not None:
            phase.on_start(self.model)
        fresh = self.optimizer is None or phase.fresh_optimizer
        if fresh:
            groups = phase.param_groups(self.model) if phase.param_groups else [list(self.model.parameters())]
        else:
            groups = [group["params"] for group in self.optimizer.param_groups]
        lrs = phase.lrs()
        if len(lrs) == 1:
            lrs = lrs * len(groups)
        if len(lrs) != len(groups):
            kept = "" if fresh else " (it keeps the previous phase's optimizer)"
            raise AeframeError(f"phase {phase.name!r} gives {len(lrs)} learning rates for {len(groups)} parameter "
                               f"groups{kept}")
        if tune is not None:
            lrs = tune(groups, lrs)
        if fresh:
            self.optimizer = self.schedule.make_optimizer([{"params": g, "lr": lr} for g, lr in zip(groups, lrs)])
        self.index, self.max_lrs, self.size = index, lrs, phase.image_size

    def set_rates(self, q: float) -> None:
        """The learning rates (and Adam's beta1) at progress ``q`` of the phase."""
        schedule = self.schedule
        beta1 = schedule.beta1_at(q) if schedule.beta1_at is not None else None
        for group, max_lr in zip(self.optimizer.param_groups, self.max_lrs):
            # In place where a captured graph reads them as device tensors.
            set_rate(group, schedule.lr_at(q, max_lr))
            if beta1 is not None and "betas" in group:
                set_beta1(group, beta1)


class _EpochLosses:
    """The epoch's training loss and its named parts, summed on the device (read once, at its end)."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.parts: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        self.total += loss.detach()
        if len(parts) > 1:  # the reconstruction loss alone is the loss itself: nothing more to add up
            for name, part in parts.items():
                self.parts[name] = self.parts.get(name, 0.0) + part.detach()
        self.steps += 1

    def finite(self) -> bool:
        return bool(torch.isfinite(self.total))

    def point(self, epoch: int, step: int, phase: str, test_mse: float, seconds: float) -> dict:
        """The curve's point for this epoch."""
        mean = float(self.total) / self.steps
        terms = {name: float(total) / self.steps for name, total in self.parts.items()} or {RECONSTRUCTION: mean}
        return {"epoch": epoch, "step": step, "phase": phase, "train_loss": mean, "terms": terms,
                "test_mse": test_mse, "seconds": seconds}


class _GpuNeighbours:
    """Other processes on the cell's GPU, counted when training starts and when it ends (see
    :mod:`aeframe.speed.contention`); nothing on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seen = [other_gpu_processes(device)] if device.type == "cuda" else []

    def most(self) -> int | None:
        if self.device.type != "cuda":
            return None
        self.seen.append(other_gpu_processes(self.device))
        counted = [n for n in self.seen if n is not None]
        return max(counted) if counted else None


def _compile_off_the_clock(model: nn.Module, loss_fn: Loss, images: torch.Tensor, test_split: DeviceSplit,
                           size: int | None, speed: Speed, device: torch.device, clock: Clock) -> float:
    """Compile the model on the first batch (and an evaluation batch) with the clock stopped; the seconds."""
    clock.stop()
    eval_images = next(test_split.batches(EVAL_BATCH, size))[0]
    seconds = warm_up(model, loss_fn, images, eval_images, speed, device)
    clock.start()
    return seconds


def _capture_off_the_clock(steps: TrainingSteps, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                           clock: Clock) -> float:
    """Capture the step's CUDA graph with the clock stopped; the seconds it took."""
    clock.stop()
    synchronize(images.device)
    start = time.perf_counter()
    steps.capture(optimizer, images)
    synchronize(images.device)
    seconds = time.perf_counter() - start
    clock.start()
    return seconds


def _range_tester(model, loss_fn, schedule, phase, train_split, context, clock, result):
    """A ``tune`` callback for :meth:`_Phases.enter` that runs a range test off the clock."""

    def tune(groups: list, lrs: list[float]) -> list[float]:
        top = max(lrs)
        ratios = [lr / top for lr in lrs]
        clock.stop()
        generator = torch.Generator(device=context.device).manual_seed(context.seed + 1)
        test = range_test(model, loss_fn, schedule, groups, ratios, train_split.view(phase.image_size), generator)
        clock.start()
        result.lr_tests.append({"phase": phase.name, "suggestion": test.suggestion, "seconds": test.seconds})
        return [test.suggestion * r for r in ratios]

    return tune
