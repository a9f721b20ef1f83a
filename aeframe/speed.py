"""How a run computes: numeric precision, memory format and compilation, and their defaults per device kind.

These settings change how fast a cell trains, and (through rounding, and through how many steps fit
in a time budget) its numbers, so they are resolved once per run, kept in every cell's config and
are part of its key. docs/speed.md gives the measurements behind the ``auto`` defaults.
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

# What `auto` resolves to, per device kind (docs/speed.md has the measurements). CPU: bf16 where the
# CPU has native bf16 arithmetic (AVX512-BF16 or AMX), which on the project's 2-core EPYC trained the
# Baseline and Pixel Shuffle 1.6-1.8x faster at the same metrics; elsewhere bf16 is emulated and
# slower than fp32. CUDA: bf16, the standard choice on Ampere and later GPUs (not measured here).
# channels_last: faster on that CPU in fp32 and bf16; on a GPU it is the layout that cuDNN's
# tensor-core convolutions use.
AUTO_CHANNELS_LAST = {"cpu": True, "cuda": True}


def auto_precision(device: torch.device) -> str:
    """The precision ``--precision auto`` means on ``device``."""
    if device.type == "cuda":
        return "bf16" if _cuda_has_bf16() else "fp32"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@dataclass(frozen=True)
class Speed:
    """The resolved settings of a run. The defaults are plain eager fp32, as before these existed."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def to_json(self) -> dict[str, Any]:
        """As a cell's config records them."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Speed:
        """The settings a cell's config records; configs stored before they existed were plain fp32."""
        return cls(str(data.get("precision") or "fp32"), bool(data.get("channels_last", False)),
                   bool(data.get("compile", False)))

    def describe(self) -> str:
        return (f"precision {self.precision}, channels_last {'on' if self.channels_last else 'off'}, "
                f"compile {'on' if self.compile else 'off'}")

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]


def resolve_speed(precision: str, channels_last: bool | None, compile: bool, device: torch.device) -> Speed:
    """``auto`` and unset choices -> this device kind's defaults; settings that cannot work here are refused."""
    kind = device.type
    if precision == "auto":
        precision = auto_precision(device)
    if precision not in PRECISIONS:
        raise UsageProblem(f"unknown precision {precision!r}; use {', '.join(PRECISION_CHOICES)}")
    if precision == "bf16" and kind == "cuda" and not _cuda_has_bf16():
        import torch

        raise UsageProblem(f"--precision bf16 asked for, but {torch.cuda.get_device_name(device)} has no bf16 "
                           "support; use --precision fp16 or fp32")
    if channels_last is None:
        channels_last = AUTO_CHANNELS_LAST.get(kind, False)
    if compile:
        missing = compile_requirement(device)
        if missing:
            raise UsageProblem(f"--compile needs {missing}; install it or leave out --compile")
    return Speed(precision, channels_last, compile)


def _cuda_has_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def compile_requirement(device: torch.device) -> str | None:
    """What torch.compile lacks on this machine for ``device`` (None when nothing is missing)."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton (the `triton` package) to compile for the GPU"
    # Inductor's CPU backend writes C++ and builds it with the compiler named by $CXX, else g++/clang++.
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    if any(shutil.which(name) for name in names):
        return None
    return f"a C++ compiler ({' or '.join(names)} on PATH, e.g. `apt-get install g++`) to compile for the CPU"
