"""A learning-rate range test (``--lr find``): the sweep of fastai v1's ``lr_find`` (the study's), and
fastai v2's "valley" rule to choose from it (the study chose by eye; docs/techniques.md).

The model trains for up to ``steps`` batches while the learning rate grows exponentially from
``start`` to ``end``; the test stops early once the smoothed loss exceeds four times its best.
The model's weights and BatchNorm statistics are then put back as they were, so the test changes
nothing but the learning rate that the phase will use.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from aeframe.contract.output import training_loss
from aeframe.contract.schedule import Schedule
from aeframe.data.splits import to_unit
from aeframe.speed.step import Stepper

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float
    seconds: float


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate half-way along the longest run of decreasing loss (not necessarily consecutive points).

    A steady descent is where training makes progress without being on the edge of diverging;
    its middle is a robust choice, unlike the minimum (already too high) or the steepest point (noisy).
    """
    n = len(losses)
    if n < 2:
        return lrs[0]
    length = [1] * n
    first = list(range(n))
    for i in range(n):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    span = end - first[end]
    return lrs[first[end] + span // 3 + span // 6]


def range_test(
    model: nn.Module,
    loss_fn: Loss,
    schedule: Schedule,
    groups: list[list[nn.Parameter]],
    ratios: Sequence[float],
    images: torch.Tensor,
    generator: torch.Generator,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
) -> RangeTest:
    """Run the test on ``images`` (uint8, the phase's view); ``ratios`` scale each group's rate."""
    began = time.perf_counter()
    saved = copy.deepcopy(model.state_dict())
    optimizer = schedule.make_optimizer([{"params": g, "lr": start * r} for g, r in zip(groups, ratios)])
    batch = schedule.batch_size
    stepper = Stepper()
    lrs, smoothed = [], []
    average, best = 0.0, math.inf
    try:
        for i in range(steps):
            lr = start * (end / start) ** (i / max(steps - 1, 1))
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            indices = torch.randint(0, images.shape[0], (batch,), generator=generator, device=images.device)
            x = to_unit(images[indices])
            if schedule.augment is not None:
                x = schedule.augment(x, generator)
            # The loss in fp32 (no autocast here); the model applies the cell's precision inside its forward.
            loss, _ = stepper.step(optimizer, lambda: training_loss(loss_fn, model(x), x))
            # The test reads every loss: it is a short, separate measurement, not the timed loop.
            value = float(loss.detach())
            average = 0.98 * average + 0.02 * value
            current = average / (1 - 0.98 ** (i + 1))
            if not math.isfinite(current) or current > 4 * best:
                break
            best = min(best, current)
            lrs.append(lr)
            smoothed.append(current)
    finally:
        model.load_state_dict(saved)
    # The first and last points are dominated by noise and by the blow-up: leave them out.
    trim_start, trim_end = len(lrs) // 10, max(len(lrs) - 5, len(lrs) // 10 + 2)
    window_lrs, window_losses = lrs[trim_start:trim_end], smoothed[trim_start:trim_end]
    suggestion = valley(window_lrs, window_losses) if window_lrs else start
    return RangeTest(lrs, smoothed, suggestion, time.perf_counter() - began)
