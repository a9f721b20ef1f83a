"""How a run computes: numeric precision, memory format and compilation.

These settings change how fast a cell trains, and (through rounding, and through how many steps fit
in a time budget) its numbers, so they are kept in every cell's config and are part of its key.
What ``auto`` means is not a table of CPU features but a measurement on the machine at hand: the
precision by :mod:`aeframe.speed.precision_probe` once per device, the memory layout by
:mod:`aeframe.speed.layout` per technique and input shape. docs/speed.md explains both.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aeframe.errors import UsageProblem

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto",) + PRECISIONS

# How a cell's precision was decided (Speed.precision_from).
ASKED = "asked"
MEASURED = "measured"


@dataclass(frozen=True)
class Speed:
    """The settings of a run. The defaults are plain eager fp32 in the usual layout, as before these existed.

    ``channels_last`` is None when each cell's layout is measured (:mod:`aeframe.speed.layout`); the
    layout a cell trained in is then in its stats (``memory_format``). ``precision_from`` says whether
    the precision was asked for or measured (``--precision auto``); it is not part of a cell's key,
    since it does not change the numbers: the precision does.
    """

    precision: str = "fp32"
    channels_last: bool | None = False
    compile: bool = False
    precision_from: str = ASKED

    def to_json(self) -> dict[str, Any]:
        """As a cell's config records them."""
        data = self.decisive()
        if self.precision_from != ASKED:
            data["precision_from"] = self.precision_from
        return data

    def decisive(self) -> dict[str, Any]:
        """The settings that decide a cell's numbers (see :func:`aeframe.planning.plan.cell_key`)."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Speed:
        """The settings a cell's config records; configs stored before they existed were plain fp32."""
        layout = data.get("channels_last", False)
        return cls(str(data.get("precision") or "fp32"), None if layout is None else bool(layout),
                   bool(data.get("compile", False)), str(data.get("precision_from") or ASKED))

    @property
    def tuned_layout(self) -> bool:
        return self.channels_last is None

    def describe(self) -> str:
        precision = f"precision {self.precision}" + (" (measured: the fastest within tolerance)"
                                                     if self.precision_from == MEASURED else "")
        layout = ("memory layout measured per technique" if self.tuned_layout
                  else f"channels_last {'on' if self.channels_last else 'off'}")
        return f"{precision}, {layout}, compile {'on' if self.compile else 'off'}"

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]


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
                  choose_precision: Any = None) -> Speed:
    """The run's settings. ``precision="auto"`` asks ``choose_precision(device)`` (a measurement, see
    :func:`aeframe.speed.precision_probe.choose_precision`) for the precision; ``channels_last=None`` leaves
    the layout to be measured per cell. Settings that cannot work here are refused first."""
    check_speed(precision, compile, device)
    if precision != "auto":
        return Speed(precision, channels_last, compile)
    if choose_precision is None:
        raise ValueError("precision 'auto' needs a measurement: pass choose_precision")
    return Speed(choose_precision(device), channels_last, compile, MEASURED)


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
