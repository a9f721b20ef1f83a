"""How much of a step's time the GPU spends computing: the share that decides how many cells can
share it (``--cells-per-device auto``).

Measured on a rehearsal (a throwaway copy, off the clock) with the PyTorch profiler: the summed
duration of the GPU kernels of a block of steps, over the block's wall time. A launch-bound step
(the study's models on a large GPU, stepped eagerly) keeps the GPU busy a small share of the time,
and another cell's kernels fit in the gaps; a step that keeps it busy leaves nothing to share.
Kernels of one stream do not overlap, so the sum does not count any time twice.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from aeframe.speed.step import synchronize

if TYPE_CHECKING:
    from aeframe.speed.rehearsal import Rehearsal

STEPS = 8


def busy_share(rehearsal: Rehearsal, steps: int = STEPS) -> float | None:
    """The share of ``steps`` training steps' wall time that the GPU spent in kernels; None off a GPU
    or where the profiler saw no kernel (it cannot trace here)."""
    if rehearsal.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    rehearsal.steps(1)  # nothing of the first call's set-up in the block
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as traced:
            synchronize(rehearsal.device)
            start = time.perf_counter()
            rehearsal.steps(steps)
            wall = time.perf_counter() - start
        kernel_us = sum(event.time_range.elapsed_us() for event in traced.events()
                        if event.device_type == torch.autograd.DeviceType.CUDA)
    except Exception:  # a profiler that cannot trace here (no CUPTI) costs the measurement, never the cell
        return None
    if kernel_us <= 0 or wall <= 0:
        return None
    return min(1.0, kernel_us / 1e6 / wall)
