"""Training steps captured in a CUDA graph and replayed, where that is possible and faster.

A small autoencoder's step on a large GPU is launch-bound: the host issues a few hundred kernels
one by one from Python, each of a few microseconds, and the GPU waits between them. A CUDA graph
records the whole step once (forward, the loss with its terms, backward, the optimizer's update)
and replays it with one launch. Its inputs are fixed tensors that each step copies its batch into;
the learning rate and Adam's beta1 become device tensors that the schedule fills in place; the
optimizer runs in its ``capturable`` form (its step counter on the device).

What stays eager, by design: the batch's gathering and the schedule's augmentation (they draw
from the cell's own generator, and are a handful of kernels), and evaluation.

Not every step can be captured: fp16's gradient scaler reads the gradients' finiteness on the host,
``--compile`` traces the model itself, an optimizer may have no capturable form, and a plugin's step
may synchronise with the host or change shape. Such a step trains eagerly, and the reason is kept
with the cell (its stats' ``step_reason``); a step never fails a cell for being uncapturable.

Capturing needs a few eager steps first (on a side stream, as CUDA requires). They change the
weights, buffers and optimizer state, so everything they touch is put back afterwards: the cell
trains from the same state it would have eagerly. Capturable AdamW computes its bias corrections on
the device rather than in Python's doubles, so graphed numbers agree with eager ones to rounding,
not bit for bit; the rehearsal that chooses the mode checks they agree within the precision probe's
tolerance.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from aeframe.speed.step import Stepper

EAGER = "eager"
GRAPHED = "graphed"
# Eager steps on a side stream before a capture: CUDA libraries allocate their workspaces and
# choose their kernels on the first calls, which must not happen during the capture.
CAPTURE_WARM_UP = 3


class GraphUnavailable(Exception):
    """The step cannot be captured; the message says why (it is kept with the cell)."""


def obstacle(device: torch.device, precision: str, compile: bool = False) -> str | None:
    """Why a step on ``device`` in ``precision`` cannot be graphed at all, or None when it may be tried."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA GPU; this cell trains on {device.type}"
    if precision == "fp16":
        return "fp16's gradient scaler checks on the host whether the gradients are finite, which a graph cannot"
    if compile:
        return "--compile traces the model itself; its steps are not captured again"
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> Callable[[], None]:
    """Turn ``optimizer`` into its capturable form in place: rates (and betas) as device tensors, step
    counters on the device. Returns what undoes it (for a capture that failed: the eager step goes on
    with the optimizer as it was). Raises GraphUnavailable for an optimizer that has no such form."""
    if "capturable" not in optimizer.defaults:
        raise GraphUnavailable(f"the optimizer {type(optimizer).__name__} has no capturable form")
    groups = [{k: group[k] for k in ("capturable", "lr", "betas") if k in group} for group in optimizer.param_groups]
    steps = {id(state): state["step"] for state in optimizer.state.values()
             if isinstance(state.get("step"), torch.Tensor)}
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
        if "betas" in group and not isinstance(group["betas"][0], torch.Tensor):
            group["betas"] = tuple(torch.tensor(float(b), device=device) for b in group["betas"])
    for state in optimizer.state.values():
        step = state.get("step")
        if isinstance(step, torch.Tensor) and step.device != device:
            state["step"] = step.to(device)

    def undo() -> None:
        for group, before in zip(optimizer.param_groups, groups):
            group.update(before)
        for state in optimizer.state.values():
            if id(state) in steps:
                state["step"] = steps[id(state)]

    return undo


def set_rate(group: dict[str, Any], value: float) -> None:
    """Set a parameter group's learning rate: in place where it is a device tensor (a captured graph
    reads that very tensor), else by assignment."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def set_beta1(group: dict[str, Any], value: float) -> None:
    """Set Adam's beta1 in a parameter group (in place where the betas are device tensors)."""
    first, second = group["betas"]
    if isinstance(first, torch.Tensor):
        first.fill_(value)
    else:
        group["betas"] = (value, second)


class _Snapshot:
    """The model's weights and buffers and the optimizer's state, to put back after a capture's
    warm-up steps (state that did not exist before is zeroed: a fresh Adam's is zeros)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.model, self.optimizer = model, optimizer
        self.optimizer_state = {id(p): {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                                        for k, v in state.items()}
                                for p, state in optimizer.state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for name, value in self.model.state_dict().items():
            value.copy_(self.model_state[name])
        for param, state in self.optimizer.state.items():
            before = self.optimizer_state.get(id(param), {})
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key in before and isinstance(before[key], torch.Tensor):
                    value.copy_(before[key])
                else:
                    value.zero_()


@dataclass(frozen=True)
class StepEvents:
    """What runs inside a training step besides the forward, backward and optimizer's step: the training
    events of the techniques that act in steps, and how to put their state back after a capture's warm-up.

    after_backward, after_step: called at those points of every step (captured with it in a graph).
    kept: keeps the events' state and returns what puts it back.
    """

    after_backward: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    kept: Callable[[], Callable[[], None]] = lambda: (lambda: None)


class GraphedStep:
    """One training step of ``model`` with ``optimizer`` captured for batches shaped like ``example``.

    :meth:`step` copies a batch into the graph's input and replays it; it returns the loss and its
    named parts as the graph's output tensors (overwritten by the next step: read or add them first).
    The step's events are captured with it: their tensor work replays at every step.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer, stepper: Stepper,
                 example: torch.Tensor, pool: Any = None, events: StepEvents = StepEvents()) -> None:
        from aeframe.contract.output import training_loss

        device = example.device
        self.optimizer = optimizer
        self.input = example.detach().clone()
        snapshot = _Snapshot(model, optimizer)
        restore_events = events.kept()
        # Autocast's weight cache would hold casts made during the capture: it must be off inside a graph.
        cast = torch.autocast(device.type, dtype=stepper_dtype(stepper), enabled=stepper.precision != "fp32",
                              cache_enabled=False)

        def compute() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with cast:
                return training_loss(loss_fn, model(self.input), self.input)

        def one_step() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            loss, parts = compute()
            loss.backward()
            if events.after_backward is not None:
                events.after_backward()
            optimizer.step()
            if events.after_step is not None:
                events.after_step()
            return loss, parts

        undo = None
        try:
            undo = make_capturable(optimizer, device)
            with _rng_kept(device):
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(CAPTURE_WARM_UP):
                        optimizer.zero_grad(set_to_none=True)
                        one_step()
                torch.cuda.current_stream(device).wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                optimizer.zero_grad(set_to_none=True)
                with torch.cuda.graph(self.graph, pool=pool):
                    self.loss, self.parts = one_step()
        except Exception as exc:
            snapshot.restore()
            restore_events()
            if undo is not None:
                undo()
            if isinstance(exc, GraphUnavailable):
                raise
            raise GraphUnavailable(f"capturing the step failed ({type(exc).__name__}: {first_line(exc)})") from exc
        snapshot.restore()
        restore_events()
        self.pool = self.graph.pool()

    def step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.input.copy_(images)
        self.graph.replay()
        return self.loss, self.parts


def stepper_dtype(stepper: Stepper) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[stepper.precision]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    # The warm-up steps draw random numbers (dropout, a model's noise): the cell's stream must not see them.
    with torch.random.fork_rng(devices=[device]):
        yield


class TrainingSteps:
    """A cell's steps, graphed or eager: graphs are captured per phase (progressive resizing's two
    image sizes are two graphs sharing one memory pool) and recaptured when a phase brings a new
    optimizer. A capture that fails makes the rest of the cell eager, with the reason kept."""

    def __init__(self, model: nn.Module, loss_fn: Callable, stepper: Stepper, graphed: bool,
                 reason: str | None = None, events: StepEvents = StepEvents()) -> None:
        self.model, self.loss_fn, self.stepper, self.events = model, loss_fn, stepper, events
        self.graphed = graphed
        self.reason = reason  # why the steps are eager, where graphs were wanted or measured against
        self._graphs: dict[tuple, GraphedStep] = {}
        self._pool: Any = None
        self.capture_seconds = 0.0

    @property
    def mode(self) -> str:
        return GRAPHED if self.graphed else EAGER

    @property
    def captured(self) -> int:
        """How many graphs were captured (one per phase that brought a new image size or optimizer)."""
        return len(self._graphs)

    def needs_capture(self, optimizer: torch.optim.Optimizer | None, images: torch.Tensor) -> bool:
        """Whether the next :meth:`step` would capture a graph (the caller stops its clock for that)."""
        return self.graphed and optimizer is not None and self._key(optimizer, images) not in self._graphs

    def capture(self, optimizer: torch.optim.Optimizer, images: torch.Tensor) -> None:
        """Capture the step for ``optimizer`` and batches like ``images``; on failure, go eager with the reason."""
        try:
            graph = GraphedStep(self.model, self.loss_fn, optimizer, self.stepper, images, self._pool, self.events)
        except GraphUnavailable as exc:
            self.graphed, self.reason = False, str(exc)
            return
        self._graphs[self._key(optimizer, images)] = graph
        self._pool = graph.pool

    def step(self, optimizer: torch.optim.Optimizer | None, images: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training step on ``images``: replayed where a graph was captured for it, else eager."""
        graph = self._graphs.get(self._key(optimizer, images)) if self.graphed and optimizer is not None else None
        if graph is not None:
            return graph.step(images)
        from aeframe.contract.output import training_loss

        return self.stepper.step(optimizer, lambda: training_loss(self.loss_fn, self.model(images), images),
                                 self.events.after_backward, self.events.after_step)

    @staticmethod
    def _key(optimizer: torch.optim.Optimizer | None, images: torch.Tensor) -> tuple:
        return id(optimizer), tuple(images.shape), images.dtype
