"""The process-wide state a cell may change, put back as it was when the cell ends.

Cells of one run train one after another in one process (the driver, a Ray worker, a pool worker),
and a plugin may set torch's global switches as it pleases (``torch.set_num_threads(1)`` in
``wrap_model``, say): without this, the next cell would train under them while its record says
otherwise. What cannot be put back is left alone: torch's inter-op thread count can be set once
per process, before any parallel work, and never again.
"""
from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

_cudnn = torch.backends.cudnn
_AUTOCAST_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class _Switch:
    """One piece of global state: how to read it and how to set it back."""

    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None]
    always: bool = False  # written back whether or not it reads as changed (random states: comparing costs as much)


def _attribute(name: str, owner: Any, attribute: str) -> _Switch:
    return _Switch(name, lambda: getattr(owner, attribute), lambda value: setattr(owner, attribute, value))


def _default_device(device: torch.device) -> None:
    # None rather than "cpu": setting a default device installs a function mode that every torch call
    # then goes through.
    torch.set_default_device(None if device == torch.device("cpu") else device)


def _cuda_rng() -> list[torch.Tensor] | None:
    # Reading it would initialise CUDA in a process that has not used it.
    return torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None


def _set_cuda_rng(states: list[torch.Tensor] | None) -> None:
    if states is not None:
        torch.cuda.set_rng_state_all(states)


def _numpy_rng() -> Any:
    numpy = sys.modules.get("numpy")  # torch imports it where it is installed; aeframe does not need it
    return None if numpy is None else numpy.random.get_state()


def _set_numpy_rng(state: Any) -> None:
    if state is not None:
        sys.modules["numpy"].random.set_state(state)


def _autocast(device: str) -> list[_Switch]:
    return [
        _Switch(f"autocast {device}", lambda: torch.is_autocast_enabled(device),
                lambda on: torch.set_autocast_enabled(device, on)),
        _Switch(f"autocast {device} dtype", lambda: torch.get_autocast_dtype(device),
                lambda dtype: torch.set_autocast_dtype(device, dtype)),
    ]


def _deterministic() -> tuple[bool, bool]:
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def _anomaly() -> tuple[bool, bool]:
    return torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()


# In this order: the legacy float32 switches are written back through their own setters, which also
# clear torch's "mixed legacy and new API" state a plugin may have left (reading them then raises).
SWITCHES: tuple[_Switch, ...] = (
    _Switch("threads", torch.get_num_threads, torch.set_num_threads),
    _Switch("torch random state", torch.get_rng_state, torch.set_rng_state, always=True),
    _Switch("CUDA random states", _cuda_rng, _set_cuda_rng, always=True),
    _Switch("python random state", random.getstate, random.setstate, always=True),
    _Switch("numpy random state", _numpy_rng, _set_numpy_rng, always=True),
    _Switch("default dtype", torch.get_default_dtype, torch.set_default_dtype),
    _Switch("default device", torch.get_default_device, _default_device),
    _Switch("grad mode", torch.is_grad_enabled, torch.set_grad_enabled),
    _Switch("anomaly detection", _anomaly, lambda mode: torch.set_anomaly_enabled(*mode)),
    _Switch("deterministic algorithms", _deterministic,
            lambda mode: torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])),
    _Switch("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    _attribute("CUDA matmul TF32", torch.backends.cuda.matmul, "allow_tf32"),
    *(_attribute(f"cuDNN {flag}", _cudnn, flag) for flag in ("allow_tf32", "benchmark", "deterministic", "enabled")),
    *(switch for device in _AUTOCAST_DEVICES for switch in _autocast(device)),
    _Switch("autocast cache", torch.is_autocast_cache_enabled, torch.set_autocast_cache_enabled),
)


_UNREADABLE = object()


def _read(switch: _Switch) -> Any:
    try:
        return switch.read()
    except RuntimeError:  # torch refuses to read the float32 switches after mixed legacy and new API use
        return _UNREADABLE


@contextmanager
def isolated() -> Iterator[None]:
    """Whatever runs inside leaves the global state of :data:`SWITCHES` as it found it, even when it raises.

    Also usable as a decorator: each call is isolated.
    """
    saved = [(switch, _read(switch)) for switch in SWITCHES]
    try:
        yield
    finally:
        for switch, value in saved:
            if value is not _UNREADABLE and (switch.always or _read(switch) != value):
                switch.write(value)
