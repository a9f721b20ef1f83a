"""Applying a run's speed settings to one cell's model: its forward under autocast, channels_last
memory, and torch.compile with its warm-up kept off the training clock. (The step itself, with the
fp16 gradient scaler, is :mod:`aeframe.speed.step`'s.)
"""
from __future__ import annotations

import copy
import time
from contextlib import AbstractContextManager
from typing import Any, Callable

import torch
from torch import nn

from aeframe.cells.settings import Speed
from aeframe.contract.output import convert, training_loss
from aeframe.errors import AeframeError, describe
from aeframe.speed.step import autocast, synchronize


class SpeedModel(nn.Module):
    """A technique's model run as ``speed`` says; to its callers it is the model, fp32 in and out.

    The forward runs under autocast (convolutions and matmuls in the lower precision, BatchNorm's
    statistics in fp32), and its output is cast back to fp32, so losses and metrics always see fp32.
    """

    def __init__(self, model: nn.Module, speed: Speed, device: torch.device):
        super().__init__()
        self.model = model
        self.speed = speed
        self.device_type = device.type

    def autocast(self) -> AbstractContextManager:
        return autocast(self.speed.precision, self.device_type)

    def forward(self, x: torch.Tensor) -> Any:
        if self.speed.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.model(x)
        # Back to the usual layout too: metrics may reshape the output with view().
        return convert(out, lambda t: t.float().contiguous())


def prepare_device(device: torch.device) -> None:
    """Device-wide switches for training. On CUDA, cuDNN benchmarks its convolution algorithms for
    each new input shape and keeps the fastest; the cell's preparation (:mod:`aeframe.speed.preparation`)
    meets every shape first, so that happens off the clock."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def speed_model(model: nn.Module, speed: Speed, device: torch.device) -> nn.Module:
    """``model`` with the settings applied (the model itself when there is nothing to apply)."""
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if speed.precision == "fp32" and not speed.channels_last:
        return model
    return SpeedModel(model, speed, device)


def compiled(model: nn.Module) -> nn.Module:
    """``model`` under torch.compile. Nothing is compiled until the first call: see :func:`warm_up`.

    Static shapes: a cell trains on one batch shape per phase, so each shape gets its own
    specialised code rather than slower shape-generic code.
    """
    return torch.compile(model, dynamic=False)


def warm_up(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_images: torch.Tensor,
    eval_images: torch.Tensor,
    speed: Speed,
    device: torch.device,
) -> float:
    """Compile ``model`` by running it once, and return the seconds that took.

    One training-mode forward, loss and backward on ``train_images`` and one evaluation-mode
    forward on ``eval_images``, without an optimizer step; the weights, BatchNorm statistics and
    random number generators are then put back, so the cell trains exactly as it would have.
    """
    saved = copy.deepcopy(model.state_dict())
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    was_training = model.training
    synchronize(device)
    start = time.perf_counter()
    try:
        model.train()
        with autocast(speed.precision, device.type):
            loss, _ = training_loss(loss_fn, model(train_images), train_images)
        loss.backward()
        model.eval()
        with torch.no_grad():
            model(eval_images)
        synchronize(device)
        seconds = time.perf_counter() - start
    except Exception as exc:
        # Inductor's errors run to pages; the cell's record keeps the traceback, the message one line.
        raise AeframeError(f"torch.compile failed: {describe(exc)}") from exc
    finally:
        for p in model.parameters():
            p.grad = None
        model.load_state_dict(saved)
        model.train(was_training)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
    return seconds
