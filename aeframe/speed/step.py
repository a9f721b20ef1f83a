"""One optimisation step under a precision, and the one way aeframe waits for a device.

Every loop that trains something (a cell, a rehearsal before the clock, the precision probe, the
learning-rate range test, a plugin's reference classifier or pretraining) steps through
:class:`Stepper`, so the order of zeroing, scaling and stepping, and what runs under autocast, are
written once. Every clock waits for the device through :func:`synchronize` (or the callable
:func:`synchronizer` returns, for loops that wait often).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Callable, TypeVar

import torch

if TYPE_CHECKING:
    from aeframe.cells.settings import Speed

T = TypeVar("T")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (nothing to wait for on a CPU).

    The device's own: a bare ``torch.cuda.synchronize()`` waits for the current device, not ``cuda:N``.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """:func:`synchronize` bound to ``device``, for clocks that read it often."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def autocast(precision: str, device_type: str) -> AbstractContextManager:
    """Autocast to ``precision`` ("fp32", "bf16" or "fp16"); a disabled (no-op) context for fp32."""
    return torch.autocast(device_type, dtype=_DTYPES[precision], enabled=precision != "fp32")


class Stepper:
    """Takes optimisation steps in ``precision`` on a device of ``device_type``.

    A step computes the loss under autocast (a loss with a network of its own, a feature loss, runs it
    in the lower precision too), zeroes the gradients, runs the backward pass (scaled for fp16, whose
    gradients underflow without it; bf16 has fp32's range and needs no scaler) and steps the optimizer.
    """

    def __init__(self, precision: str = "fp32", device_type: str = "cpu"):
        self.precision = precision
        self.device_type = device_type
        self.scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None

    @classmethod
    def of(cls, speed: Speed, device: torch.device) -> Stepper:
        """The stepper of a cell's settings on ``device``.

        Args:
            speed: The cell's speed settings; their ``precision`` ("fp32", "bf16" or "fp16") is used.
            device: The device the cell trains on; its type ("cpu" or "cuda") is used.

        Returns:
            A stepper in that precision for that kind of device.
        """
        return cls(speed.precision, device.type)

    def autocast(self) -> AbstractContextManager:
        """Autocast to this stepper's precision on its kind of device: what :meth:`step` computes under.

        Returns:
            A context manager: ``torch.autocast`` to bf16 or fp16, or a disabled (no-op) one for fp32.
        """
        return autocast(self.precision, self.device_type)

    def step(self, optimizer: torch.optim.Optimizer | None, compute: Callable[[], T],
             after_backward: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None) -> T:
        """``compute()`` under autocast, then one optimizer step on the loss it returns; its result.

        ``compute`` returns the loss, or a tuple whose first item is the loss (the other items are
        handed back unchanged, e.g. the loss's named parts). ``optimizer`` None runs the backward pass
        alone (a model with nothing to train, rehearsed for its set-up).

        Args:
            optimizer: The optimizer to zero and step; None for the backward pass alone.
            compute: Takes no argument and returns the loss (a scalar tensor), or a tuple whose first item
                is the loss.
            after_backward: Called after the backward pass, before the step, with the gradients unscaled
                (fp16's scaler unscales them first); a training event.
            after_step: Called after the optimizer's step; a training event.

        Returns:
            What ``compute()`` returned, unchanged.
        """
        with self.autocast():
            found = compute()
        loss = found[0] if isinstance(found, tuple) else found
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if after_backward is not None:
                after_backward()
            if optimizer is not None:
                optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            if after_backward is not None and optimizer is not None:
                self.scaler.unscale_(optimizer)  # a hook that clips or measures sees the true gradients
            if after_backward is not None:
                after_backward()
            if optimizer is not None:  # the scaler updates from the steps it checked: none without one
                self.scaler.step(optimizer)
                self.scaler.update()
        if after_step is not None:
            after_step()
        return found
