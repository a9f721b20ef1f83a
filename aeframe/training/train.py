"""One cell's training loop: step the composed model, loss and schedule until the budget ends.

Per step there is no host synchronisation on a GPU: the loss is summed on the device and read at
the end of each epoch (or when the progress display is due), and the clock is read by the budget
tracker only as often as it needs to stop within one step of a time limit (and about four times a
second otherwise). At those reads, when the device has just been synchronised anyway, the summed loss
is checked: a NaN or infinite loss stops the cell within a few steps (on a CPU, at the very step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from aeframe.cells.budget import Budget, BudgetTracker, Clock
from aeframe.speed.contention import other_gpu_processes
from aeframe.data.splits import DeviceSplit, epoch_order, to_unit
from aeframe.errors import AeframeError
from aeframe.training.evaluate import EVAL_BATCH, timed_evaluate
from aeframe.training.lr_find import range_test
from aeframe.speed.numerics import autocast, grad_scaler, warm_up
from aeframe.contract.output import RECONSTRUCTION, training_loss
from aeframe.contract.schedule import Phase, Schedule
from aeframe.cells.settings import Speed
from aeframe.contract.technique import CellContext


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
    cpu_share: float | None = None  # see aeframe.speed.contention
    cpu_share_measure: str | None = None
    gpu_other_processes: int | None = None


class _PhaseState:
    """The optimizer and data view of the phase in progress."""

    def __init__(self) -> None:
        self.index = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.max_lrs: list[float] = []
        self.size: int | None = None

    def enter(
        self,
        index: int,
        phase: Phase,
        schedule: Schedule,
        model: nn.Module,
        tune: Callable[[list, list[float]], list[float]] | None = None,
    ) -> None:
        """Start a phase: its ``on_start``, then its optimizer (new or kept) and peak rates.

        ``tune`` may replace the peak rates (``--lr find``); it sees the phase's parameter groups.
        """
        if phase.on_start is not None:
            phase.on_start(model)
        fresh = self.optimizer is None or phase.fresh_optimizer
        if fresh:
            groups = phase.param_groups(model) if phase.param_groups else [list(model.parameters())]
        else:
            groups = [group["params"] for group in self.optimizer.param_groups]
        lrs = phase.lrs()
        if len(lrs) == 1:
            lrs = lrs * len(groups)
        if len(lrs) != len(groups):
            kept = "" if fresh else " (it keeps the previous phase's optimizer)"
            raise AeframeError(f"phase {phase.name!r} gives {len(lrs)} learning rates for {len(groups)} parameter groups{kept}")
        if tune is not None:
            lrs = tune(groups, lrs)
        if fresh:
            self.optimizer = schedule.make_optimizer([{"params": g, "lr": lr} for g, lr in zip(groups, lrs)])
        self.index, self.max_lrs, self.size = index, lrs, phase.image_size

    def set_rates(self, schedule: Schedule, q: float) -> None:
        beta1 = schedule.beta1_at(q) if schedule.beta1_at is not None else None
        for group, max_lr in zip(self.optimizer.param_groups, self.max_lrs):
            group["lr"] = schedule.lr_at(q, max_lr)
            if beta1 is not None and "betas" in group:
                group["betas"] = (beta1, group["betas"][1])


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: Schedule,
    train_split: DeviceSplit,
    test_split: DeviceSplit,
    budget: Budget,
    context: CellContext,
    generator: torch.Generator,
    progress: ProgressSink | None = None,
    find_lr: bool = False,
    speed: Speed = Speed(),
) -> TrainResult:
    """Train ``model`` in place under ``budget`` and return what happened, epoch by epoch.

    With ``find_lr``, phases marked ``find_lr`` take their peak rate from a range test run when they
    begin; the test's time is kept off the training clock and reported in ``lr_tests``.

    ``model`` is already prepared for ``speed`` (see :mod:`aeframe.speed.numerics`); here the loss runs
    under the same autocast (on the model's fp32 output), fp16 gets a gradient scaler, and a
    compiled model is warmed up on the first batch with the clock stopped (``compile_seconds``).
    """
    device = context.device
    batch = schedule.batch_size
    steps_per_epoch = len(train_split) // batch
    if steps_per_epoch == 0:
        raise AeframeError(f"{context.dataset} has {len(train_split)} training images, fewer than one batch of {batch}")
    clock = Clock(device)
    tracker = BudgetTracker(budget, steps_per_epoch, clock, every_step=device.type != "cuda")
    state = _PhaseState()
    result = TrainResult()
    scaler = grad_scaler(speed, device)
    step, epoch = 0, 0
    others = [other_gpu_processes(device)] if device.type == "cuda" else []
    model.train()
    clock.start()
    while True:
        order = epoch_order(len(train_split), batch, generator, device)
        loss_sum = torch.zeros((), device=device)
        part_sums: dict[str, torch.Tensor] = {}
        steps_this_epoch = 0
        stop = False
        for indices in order:
            index, q = schedule.locate(tracker.progress(step))
            if index != state.index:
                phase = schedule.phases[index]
                tune = None
                if find_lr and phase.find_lr:
                    tune = _range_tester(model, loss_fn, schedule, phase, train_split, context, clock, result)
                state.enter(index, phase, schedule, model, tune)
                if tune is not None:
                    tracker.pause(step)
            state.set_rates(schedule, q)
            images = to_unit(train_split.view(state.size)[indices])
            if schedule.augment is not None:
                images = schedule.augment(images, generator)
            if speed.compile and step == 0:
                clock.stop()
                eval_images = next(test_split.batches(EVAL_BATCH, state.size))[0]
                result.compile_seconds = warm_up(model, loss_fn, images, eval_images, speed, device)
                clock.start()
                tracker.pause(step)
            # A loss with a network of its own (a feature loss) runs it in the lower precision too;
            # the model's output reaches it in fp32, and reductions such as MSE stay in fp32.
            with autocast(speed, device.type):
                loss, parts = training_loss(loss_fn, model(images), images)
            state.optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                state.optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(state.optimizer)
                scaler.update()
            loss_sum += loss.detach()
            if len(parts) > 1:  # the reconstruction loss alone is the loss itself: nothing more to add up
                for name, part in parts.items():
                    part_sums[name] = part_sums.get(name, 0.0) + part.detach()
            step += 1
            steps_this_epoch += 1
            stop = tracker.exhausted(step)
            # Only where the device waited for the clock anyway: a check of its own would stall the GPU.
            if tracker.synchronised and not bool(torch.isfinite(loss_sum)):
                stop = True
            if progress is not None and (stop or progress.due()):
                progress.update(
                    epoch=epoch + 1,
                    step=step,
                    loss=float(loss.detach()),
                    progress=tracker.progress(step),
                    left=tracker.left(step),
                )
            if stop:
                break
        epoch += 1
        clock.stop()
        mean_loss = float(loss_sum) / steps_this_epoch
        terms = {name: float(total) / steps_this_epoch for name, total in part_sums.items()} or {RECONSTRUCTION: mean_loss}
        _, test_mse, seconds = timed_evaluate(model, test_split, (), context, state.size)
        result.eval_seconds += seconds
        result.curve.append(
            {
                "epoch": epoch,
                "step": step,
                "phase": schedule.phases[state.index].name,
                "train_loss": mean_loss,
                "terms": terms,
                "test_mse": test_mse,
                "seconds": clock.read(),
            }
        )
        if not math.isfinite(mean_loss):
            result.diverged = f"training loss became {mean_loss} by step {step} (epoch {epoch})"
            break
        if stop or tracker.exhausted(step):
            break
        clock.start()
        tracker.pause(step)
    result.steps = step
    result.epochs = step / steps_per_epoch
    result.train_seconds = clock.read()
    result.final_size = state.size
    result.cpu_share, result.cpu_share_measure = clock.cpu.share(), clock.cpu.method
    if device.type == "cuda":
        others.append(other_gpu_processes(device))
        seen = [n for n in others if n is not None]
        result.gpu_other_processes = max(seen) if seen else None
    return result


def _range_tester(model, loss_fn, schedule, phase, train_split, context, clock, result):
    """A ``tune`` callback for :meth:`_PhaseState.enter` that runs a range test off the clock."""

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
