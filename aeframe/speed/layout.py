"""Choosing a cell's memory layout by measuring it: contiguous (NCHW) or channels_last (NHWC).

Both layouts compute the same model (up to the order of float additions), but which is faster
depends on the device, the precision, the model and the input shape: on one 2-core EPYC
channels_last trained the Baseline 1.1x faster in bf16, on a Xeon with AMX it was 1.7x slower. So
the first cell of each (device, torch version, technique, input shape, batch size, precision)
rehearses a few training steps of every phase in each layout, on throwaway copies, with the clock
stopped, and the faster layout is kept in the cache for every later cell and run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any, Callable

import torch
from torch import nn

from aeframe.cells.record import busy_share
from aeframe.cells.settings import Speed
from aeframe.contract.schedule import Schedule
from aeframe.data.splits import DeviceSplit
from aeframe.speed.cache import SpeedCache, entry_key, rates_problem
from aeframe.speed.contention import CpuShareMeter
from aeframe.speed.rehearsal import Rehearsal, block_steps

CONTIGUOUS = "contiguous"
CHANNELS_LAST = "channels_last"
LAYOUTS = {CONTIGUOUS: False, CHANNELS_LAST: True}

# How the layout was decided (the record's stats["layout_source"]).
FORCED = "forced"  # --channels-last / --no-channels-last
MEASURED = "measured"  # rehearsed in this cell
MEASURED_BUSY = "measured on a busy machine"  # like MEASURED, but not cached: the next cell measures again
CACHED = "cached"  # rehearsed by an earlier cell or run on this machine
UNMEASURED = "unmeasured"  # the model could not be copied to rehearse: the usual layout, untuned

ROUNDS = 3


@dataclass(frozen=True)
class LayoutChoice:
    """The layout a cell trains in, how that was decided, and the rates measured (images/s per layout)."""

    channels_last: bool
    source: str
    images_per_second: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return CHANNELS_LAST if self.channels_last else CONTIGUOUS

    def stats(self) -> dict[str, Any]:
        """What the cell's record keeps of it."""
        found: dict[str, Any] = {"memory_format": self.name, "layout_source": self.source}
        if self.images_per_second:
            found["layout_images_per_second"] = dict(self.images_per_second)
        return found


def layout_key(device_name: str, torch_version: str, techniques: list[dict], shape: tuple[int, ...],
               batch_size: int, precision: str) -> str:
    """The cache key of a layout choice: what the measurement depended on."""
    return entry_key("layout", device=device_name, torch=torch_version, techniques=techniques, shape=list(shape),
                     batch_size=batch_size, precision=precision)


def layout_problem(entry: dict[str, Any]) -> str | None:
    """Why a cached layout entry cannot be used (the cell's record and the table carry it); None when it can."""
    if not isinstance(entry.get("memory_format"), str) or entry["memory_format"] not in LAYOUTS:
        return f"memory_format is {json.dumps(entry.get('memory_format'))[:40]}, not one of {', '.join(LAYOUTS)}"
    return rates_problem(entry.get("images_per_second"))


def choose_layout(
    model: nn.Module,
    loss_fn: Callable,
    schedule: Schedule,
    speed: Speed,
    device: torch.device,
    train: DeviceSplit,
    cache: SpeedCache,
    key: str,
) -> LayoutChoice:
    """The faster layout for ``model`` under ``schedule``, from ``cache`` or measured now.

    ``speed.channels_last`` is ignored (this is what decides it). Each phase is rehearsed at its
    image size with its ``on_start`` applied, and the rates are weighted by the phases' fractions of
    the budget, so a technique that spends half its steps on small images is timed that way.
    """
    found = cache.get(key, layout_problem)
    if found is not None:
        return LayoutChoice(LAYOUTS[found["memory_format"]], CACHED, dict(found.get("images_per_second") or {}))
    meter = CpuShareMeter(torch.get_num_threads())
    meter.start()
    rates = measure_layouts(model, loss_fn, schedule, speed, device, train)
    meter.stop()
    best = max(rates, key=lambda name: rates[name])
    # A measurement on a busy machine decides this cell only: the next cell measures again.
    if not busy_share(meter.share()):
        cache.put(key, {"memory_format": best, "images_per_second": rates})
        return LayoutChoice(LAYOUTS[best], MEASURED, rates)
    return LayoutChoice(LAYOUTS[best], MEASURED_BUSY, rates)


def measure_layouts(
    model: nn.Module,
    loss_fn: Callable,
    schedule: Schedule,
    speed: Speed,
    device: torch.device,
    train: DeviceSplit,
) -> dict[str, float]:
    """Images/s of training in each layout, rehearsed in interleaved rounds (median per phase)."""
    rehearsals = {
        name: [Rehearsal(model, loss_fn, schedule, i, replace(speed, channels_last=flag), device,
                         train.view(phase.image_size)) for i, phase in enumerate(schedule.phases)]
        for name, flag in LAYOUTS.items()
    }
    # One untimed step each first: the first step at a shape pays its one-off set-up.
    steps = []
    for i in range(len(schedule.phases)):
        for name in LAYOUTS:
            rehearsals[name][i].steps(1)
        seconds = min(rehearsals[name][i].steps(1) for name in LAYOUTS)
        steps.append(block_steps(seconds))
    per_step: dict[str, list[list[float]]] = {name: [[] for _ in schedule.phases] for name in LAYOUTS}
    for round_ in range(ROUNDS):
        # Alternate which layout goes first, so neither always follows the other.
        order = list(LAYOUTS) if round_ % 2 == 0 else list(reversed(LAYOUTS))
        for i in range(len(schedule.phases)):
            for name in order:
                per_step[name][i].append(rehearsals[name][i].steps(steps[i]) / steps[i])
    fractions = [phase.fraction for phase in schedule.phases]
    total = sum(fractions) or 1.0
    rates = {}
    for name in LAYOUTS:
        seconds = sum(f / total * median(times) for f, times in zip(fractions, per_step[name]))
        rates[name] = schedule.batch_size / max(seconds, 1e-9)
    return rates
