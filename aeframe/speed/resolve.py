"""The run's speed settings resolved on the device the cells train on: refused where they cannot work,
and ``--precision auto`` measured (:mod:`aeframe.speed.precision_probe`)."""
from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from aeframe.cells.settings import MEASURED, PRECISION_CHOICES, Speed
from aeframe.errors import UsageProblem

if TYPE_CHECKING:
    import torch


def check_speed(precision: str, compile: bool, device: torch.device) -> None:
    """Refuse settings that cannot work on ``device``, before anything is measured or trained."""
    if precision not in PRECISION_CHOICES:
        raise UsageProblem(f"unknown precision {precision!r}; use {', '.join(PRECISION_CHOICES)}")
    if precision == "bf16" and device.type == "cuda" and not cuda_has_bf16(device):
        import torch

        raise UsageProblem(f"--precision bf16 asked for, but {torch.cuda.get_device_name(device)} has no bf16 "
                           "support; use --precision fp16 or fp32")
    if compile:
        missing = compile_requirement(device)
        if missing:
            raise UsageProblem(f"--compile needs {missing}; install it or leave out --compile")


def resolve_speed(precision: str, channels_last: bool | None, compile: bool, device: torch.device,
                  choose_precision: Any = None, graphs: bool | None = None) -> Speed:
    """The run's settings. ``precision="auto"`` asks ``choose_precision(device)`` (a measurement, see
    :func:`aeframe.speed.precision_probe.choose_precision`) for the precision; ``channels_last=None`` leaves
    the layout to be measured per cell, ``graphs=None`` the step mode. Settings that cannot work here are
    refused first."""
    check_speed(precision, compile, device)
    if precision != "auto":
        return Speed(precision, channels_last, compile, graphs=graphs)
    if choose_precision is None:
        raise ValueError("precision 'auto' needs a measurement: pass choose_precision")
    return Speed(choose_precision(device), channels_last, compile, MEASURED, graphs)


def cuda_has_bf16(device: torch.device | None = None) -> bool:
    """Whether ``device`` computes bf16 natively: compute capability 8.0 (Ampere) or later. torch's own
    ``is_bf16_supported()`` also says yes where bf16 is only emulated (V100, T4), and for the current
    device rather than the one asked for."""
    import torch

    if torch.version.hip:
        return torch.cuda.is_bf16_supported()
    return torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device()).major >= 8


def compile_requirement(device: torch.device) -> str | None:
    """What torch.compile lacks on this machine for ``device`` (None when nothing is missing)."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton (the `triton` package) to compile for the GPU"
        # Triton builds a small C launcher for each kernel with $CC, else gcc/clang/cc.
        names = [os.environ["CC"]] if os.environ.get("CC") else ["gcc", "clang", "cc"]
        if any(shutil.which(name) for name in names):
            return None
        return f"a C compiler for Triton's launchers ({' or '.join(names)} on PATH, e.g. `apt-get install gcc`)"
    # Inductor's CPU backend writes C++ and builds it with the compiler named by $CXX, else g++/clang++.
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    if any(shutil.which(name) for name in names):
        return None
    return f"a C++ compiler ({' or '.join(names)} on PATH, e.g. `apt-get install g++`) to compile for the CPU"
