"""Calling the techniques that act at training events (:mod:`aeframe.contract.events`) during one cell,
and keeping the diagnostics they record.

One :class:`CellEvents` per cell: each acting technique has its own :class:`TrainingState`, which the
training loop brings up to date (step, progress, phase) before each event. Diagnostics are summed on
the device, never read in a step, and averaged per epoch when the curve's point is made.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from aeframe.contract.events import AROUND_EVALUATION, STEP_EVENTS, TrainingState
from aeframe.errors import AeframeError
from aeframe.planning.composition import Actor


class Diagnostics:
    """Named numbers recorded by techniques: a sum and a count per name, on the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.owners: dict[str, str] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, owner: str, name: str, value: float | torch.Tensor) -> None:
        if self.owners.setdefault(name, owner) != owner:
            raise AeframeError(f"techniques {self.owners[name]} and {owner} both record the diagnostic {name!r}; "
                               "each technique records names of its own")
        if name not in self.sums:
            self.sums[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.counts[name] = torch.zeros((), dtype=torch.float64, device=self.device)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise AeframeError(f"technique {owner} recorded {name!r} as a tensor of {value.numel()} elements; "
                                   "record one number")
            value = value.detach().reshape(()).to(self.device, torch.float64)
        # In place: a step captured in a CUDA graph adds into these very tensors at every replay.
        self.sums[name].add_(value)
        self.counts[name].add_(1)

    def take(self) -> dict[str, float]:
        """The mean of each name recorded since the last take, and a fresh start (zeroed in place)."""
        means = {}
        for name, total in self.sums.items():
            count = float(self.counts[name])
            if count:
                means[name] = float(total) / count
            total.zero_()
            self.counts[name].zero_()
        return means

    def kept(self) -> Callable[[], None]:
        """Keep the sums as they are now, and return what puts them back (names recorded later: zero)."""
        before = {name: (t.clone(), self.counts[name].clone()) for name, t in self.sums.items()}

        @torch.no_grad()
        def restore() -> None:
            for name, total in self.sums.items():
                if name in before:
                    total.copy_(before[name][0])
                    self.counts[name].copy_(before[name][1])
                else:
                    total.zero_()
                    self.counts[name].zero_()

        return restore


class CellEvents:
    """The acting techniques of one cell (their names' order), their states and their diagnostics."""

    def __init__(self, actors: Sequence[Actor], model: nn.Module, device: torch.device) -> None:
        self.actors = list(actors)
        self.diagnostics = Diagnostics(device)
        self.states = {a.name: TrainingState(model=model, device=device, params=dict(a.params),
                                             recorder=self._recorder(a.name)) for a in self.actors}

    def _recorder(self, owner: str):
        return lambda name, value: self.diagnostics.add(owner, name, value)

    def acting_in_steps(self) -> bool:
        """Whether any technique acts inside a training step (after the backward pass or the step)."""
        return any(a.technique.acts_on(e) for a in self.actors for e in STEP_EVENTS)

    def update(self, **fields: Any) -> None:
        """Bring every state up to date (``step=``, ``progress=``, ``optimizer=``, ``phase=``...)."""
        for state in self.states.values():
            for name, value in fields.items():
                setattr(state, name, value)

    def fire(self, event: str) -> None:
        """Call ``event`` on each technique that defines it, in order."""
        for actor in self.actors:
            if actor.technique.acts_on(event):
                getattr(actor.technique, event)(self.states[actor.name])

    def after_backward(self) -> None:
        self.fire("on_after_backward")

    def after_step(self) -> None:
        for state in self.states.values():
            state.step += 1
        self.fire("on_after_step")

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Around one evaluation: the acting technique's ``around_evaluation`` (at most one has it)."""
        with ExitStack() as stack:
            for actor in self.actors:
                if actor.technique.acts_on(AROUND_EVALUATION):
                    stack.enter_context(contextmanager(actor.technique.around_evaluation)(self.states[actor.name]))
            yield

    def kept(self) -> Callable[[], None]:
        """Keep the diagnostics and the tensors the acting techniques hold (an average of the weights), and
        return what puts them back: a CUDA graph's warm-up steps run the step events, and must leave no
        trace. Tensors are found among each technique's attributes, alone or in a list, tuple or dict;
        one made during the warm-up is left as it is (make state in ``on_train_start``)."""
        restore_diagnostics = self.diagnostics.kept()
        held = [(t, t.detach().clone()) for a in self.actors for t in _held_tensors(a.technique)]

        @torch.no_grad()
        def restore() -> None:
            restore_diagnostics()
            for tensor, before in held:
                tensor.copy_(before)

        return restore


def _held_tensors(obj: Any) -> list[torch.Tensor]:
    found = []
    for value in vars(obj).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        found += [item for item in items if isinstance(item, torch.Tensor)]
    return found

