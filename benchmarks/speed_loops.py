"""Three ways to train the same cell for one epoch, each timed with device synchronisation.

(a) ``aeframe_loop``: aeframe's own ``train()``; its ``train_seconds`` (per-epoch evaluation excluded).
(b) ``plain_loop``: the least a hand-written PyTorch loop can do on the same device-resident uint8
    data: no learning-rate curve, no budget tracking, no loss bookkeeping. The floor of overhead.
(c) ``study_loop``: the study's style: a DataLoader over a Dataset of PIL images with ToTensor, and a
    host-to-device copy per batch.

All three use the technique's own model, loss, optimizer (``schedule.make_optimizer``), batch size,
augmentation and phases (``on_start``, parameter groups, fresh optimizers, image size), the same
speed settings (precision under autocast with an fp32 loss, channels_last), and process the same
number of images. (b) and (c) give each phase its peak learning rate throughout: what the
rate is does not change the work a step does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from aeframe.cells.budget import Budget
from aeframe.speed.numerics import speed_model
from aeframe.contract.schedule import Phase, Schedule
from aeframe.cells.settings import Speed
from aeframe.speed.graphs import GRAPHED, GraphUnavailable
from aeframe.speed.step_mode import FORCED, StepChoice
from aeframe.training.train import train

from speed_cells import BenchData, FreshCell
from speed_config import WORKERS


@dataclass(frozen=True)
class LoopRun:
    steps: int
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phase_starts(schedule: Schedule, steps: int) -> dict[int, int]:
    """Step -> index of the phase that begins there, placed as aeframe places them (progress = step / steps)."""
    starts: dict[int, int] = {}
    current = -1
    for step in range(steps):
        index, _ = schedule.locate(step / steps)
        if index != current:
            starts[step] = current = index
    return starts


def enter_phase(phase: Phase, schedule: Schedule, model: nn.Module,
                optimizer: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
    """What a phase asks for when it begins: its ``on_start``, then a new optimizer or new peak rates."""
    if phase.on_start is not None:
        phase.on_start(model)
    lrs = phase.lrs()
    if optimizer is None or phase.fresh_optimizer:
        groups = phase.param_groups(model) if phase.param_groups else [list(model.parameters())]
        lrs = lrs * len(groups) if len(lrs) == 1 else lrs
        return schedule.make_optimizer([{"params": g, "lr": lr} for g, lr in zip(groups, lrs)])
    lrs = lrs * len(optimizer.param_groups) if len(lrs) == 1 else lrs
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    return optimizer


class _Step:
    """One hand-written training step under the run's speed settings: what (b) and (c) both do."""

    def __init__(self, model: nn.Module, loss_fn, speed: Speed, device: torch.device):
        self.layout = torch.channels_last if speed.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.layout)
        self.loss_fn = loss_fn
        self.autocast = lambda: torch.autocast(device.type, dtype=speed.dtype, enabled=speed.precision != "fp32")
        self.scaler = torch.amp.GradScaler(device.type) if speed.precision == "fp16" else None

    def __call__(self, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        with self.autocast():
            out = self.model(x.contiguous(memory_format=self.layout))
            loss = self.loss_fn(out.float(), x)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


def aeframe_loop(cell: FreshCell, data: BenchData, graphed: bool = False) -> LoopRun:
    """aeframe's ``train()``, eager or (``graphed``) with its steps captured in CUDA graphs; a step that
    could not be captured raises GraphUnavailable with aeframe's reason."""
    model = speed_model(cell.model, cell.speed, data.device)
    step = StepChoice(GRAPHED, FORCED) if graphed else StepChoice()
    result = train(model, cell.loss, cell.schedule, data.cells.train, data.cells.test, Budget(epochs=1),
                   cell.context, cell.generator(), speed=cell.speed, step=step)
    if graphed and result.step_mode != GRAPHED:
        raise GraphUnavailable(result.step_reason or "aeframe stepped eagerly")
    return LoopRun(result.steps, result.steps * cell.schedule.batch_size, result.train_seconds)


def plain_graphed_loop(cell: FreshCell, data: BenchData) -> LoopRun:
    """(b) captured by hand, as PyTorch's CUDA graphs documentation captures a whole network: per phase a
    static input, three warm-up steps on a side stream, one capture of forward, loss, backward and a
    capturable optimizer's step, then a copy and a replay per step. Capturing is not timed (aeframe
    keeps it off its clock too); each phase keeps its peak rate, as in (b)."""
    model, loss_fn, schedule, device = cell.model, cell.loss, cell.schedule, data.device
    if device.type != "cuda":
        raise GraphUnavailable("CUDA graphs need a CUDA GPU")
    split, batch = data.cells.train, schedule.batch_size
    steps = len(split) // batch
    starts = phase_starts(schedule, steps)
    views = [split.view(phase.image_size) for phase in schedule.phases]
    generator = cell.generator()
    model.train()
    layout = torch.channels_last if cell.speed.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    cast = torch.autocast(device.type, dtype=cell.speed.dtype, enabled=cell.speed.precision != "fp32",
                          cache_enabled=False)
    optimizer = graph = static = started = None
    images = views[0]
    order = torch.randperm(len(split), generator=generator, device=device)[: steps * batch].view(steps, batch)
    seconds = 0.0
    for step, indices in enumerate(order):
        if step in starts:
            if started is not None:
                synchronize(device)
                seconds += time.perf_counter() - started
            optimizer = enter_phase(schedule.phases[starts[step]], schedule, model, optimizer)
            for group in optimizer.param_groups:
                group["capturable"] = True  # as if built with capturable=True
            images = views[starts[step]]
            static = images[indices].float().div_(255).contiguous(memory_format=layout)
            graph = _captured(model, loss_fn, optimizer, static, cast, device)
            synchronize(device)
            started = time.perf_counter()
        x = images[indices].float().div_(255)
        if schedule.augment is not None:
            x = schedule.augment(x, generator)
        static.copy_(x)
        graph.replay()
    synchronize(device)
    seconds += time.perf_counter() - started
    return LoopRun(steps, steps * batch, seconds)


def plain_loop(cell: FreshCell, data: BenchData) -> LoopRun:
    model, loss_fn, schedule, device = cell.model, cell.loss, cell.schedule, data.device
    split, batch = data.cells.train, schedule.batch_size
    steps = len(split) // batch
    starts = phase_starts(schedule, steps)
    # Resized views are made once per dataset; aeframe's warm-up round leaves them made too.
    views = [split.view(phase.image_size) for phase in schedule.phases]
    generator = cell.generator()
    model.train()
    step_once = _Step(model, loss_fn, cell.speed, device)
    optimizer, images = None, views[0]
    synchronize(device)
    started = time.perf_counter()
    order = torch.randperm(len(split), generator=generator, device=device)[: steps * batch].view(steps, batch)
    for step, indices in enumerate(order):
        if step in starts:
            optimizer = enter_phase(schedule.phases[starts[step]], schedule, model, optimizer)
            images = views[starts[step]]
        x = images[indices].float().div_(255)
        if schedule.augment is not None:
            x = schedule.augment(x, generator)
        step_once(x, optimizer)
    synchronize(device)
    return LoopRun(steps, steps * batch, time.perf_counter() - started)


def _captured(model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, static: torch.Tensor, cast,
              device: torch.device) -> torch.cuda.CUDAGraph:
    def whole_step() -> None:
        with cast:
            loss = loss_fn(model(static).float(), static)
        loss.backward()
        optimizer.step()

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            whole_step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        whole_step()
    return graph


def study_loader(data: BenchData, batch: int, workers: int, seed: int) -> DataLoader:
    return DataLoader(data.study, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=data.device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def study_loop(cell: FreshCell, data: BenchData, workers: int = WORKERS) -> LoopRun:
    model, loss_fn, schedule, device = cell.model, cell.loss, cell.schedule, data.device
    loader = study_loader(data, schedule.batch_size, workers, cell.context.seed)
    steps = len(loader)
    starts = phase_starts(schedule, steps)
    generator = cell.generator()
    model.train()
    step_once = _Step(model, loss_fn, cell.speed, device)
    optimizer, size = None, None
    synchronize(device)
    started = time.perf_counter()
    step = 0
    # Iterating starts the workers (when there are any) inside the timing, as each epoch of the study did.
    for x, _labels in loader:
        if step in starts:
            phase = schedule.phases[starts[step]]
            optimizer, size = enter_phase(phase, schedule, model, optimizer), phase.image_size
        x = x.to(device, non_blocking=True)
        if size is not None:
            # The same bilinear resize aeframe makes once per dataset, here per batch as a transform would.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        if schedule.augment is not None:
            x = schedule.augment(x, generator)
        step_once(x, optimizer)
        step += 1
    synchronize(device)
    return LoopRun(step, step * schedule.batch_size, time.perf_counter() - started)


LOOPS: dict[str, Callable[[FreshCell, BenchData], LoopRun]] = {
    "aeframe": aeframe_loop,
    "plain": plain_loop,
    "study": study_loop,
}
