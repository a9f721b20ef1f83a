"""Training events: the points of a cell's training where a technique may act, and what it is told there.

A technique acts at an event by defining the method of that name (:data:`EVENT_METHODS`); each is
called with a :class:`TrainingState`. The order within one training step::

    forward, loss, backward
    on_after_backward      gradients are in .grad, unscaled (fp16), the optimizer has not stepped
    optimizer step
    on_after_step          the weights have changed

and around them::

    on_train_start         once, before the first step (the parts are built and on the device)
    on_phase_start         when each phase of the schedule begins (after the phase's own on_start)
    on_epoch_end           after each epoch's last step, before its evaluation
    on_phase_end           when a phase ends (before the next one starts, or before training ends)
    on_train_end           once, after the last step and its phase's end
    around_evaluation      a generator: what runs before ``yield`` runs before every evaluation
                           (each epoch's test loss, the final metrics and pictures), what runs after
                           it puts things back: evaluate with other weights, as EMA and SWA do

Several techniques on one event are called in the order of their names, whatever order they were
typed in, so that ``a+b`` and ``b+a`` train alike. ``around_evaluation`` changes what is evaluated,
so two techniques that both define it cannot be combined (refused at planning, naming both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch
    from torch import nn

# Called in this order through a training run (around_evaluation wraps each evaluation).
STEP_EVENTS = ("on_after_backward", "on_after_step")
RUN_EVENTS = ("on_train_start", "on_phase_start", "on_epoch_end", "on_phase_end", "on_train_end")
AROUND_EVALUATION = "around_evaluation"
EVENT_METHODS = (*RUN_EVENTS[:2], *STEP_EVENTS, *RUN_EVENTS[2:], AROUND_EVALUATION)


@dataclass
class TrainingState:
    """What a technique's event methods are told: the training in progress, and where to record numbers.

    model:       the model being trained (the composed one: every wrapper included), on ``device``.
    optimizer:   the phase's optimizer; None before the first phase starts (``on_train_start``).
    step:        optimizer steps taken so far in the cell (``on_after_step``: this one included).
    epoch:       epochs finished so far (``on_epoch_end``: this one included).
    progress:    the share of the budget used, in [0, 1].
    phase:       the name of the schedule's phase in progress ("" before the first one).
    phase_index: its index in the schedule's phases (-1 before the first one).
    device:      where training runs.
    params:      this technique's typed parameters (each technique sees its own).

    In a step captured in a CUDA graph (``cuda_graphs = True``), ``on_after_backward`` and
    ``on_after_step`` run their Python once, at the capture, and the graph replays their tensor work at
    every step: there ``step``, ``progress`` and ``params`` read as they were at the capture. A technique
    whose step hooks use them (or synchronise with the host) leaves ``cuda_graphs`` False.
    """

    model: nn.Module
    device: torch.device
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    epoch: int = 0
    progress: float = 0.0
    phase: str = ""
    phase_index: int = -1
    params: dict[str, Any] = field(default_factory=dict)
    # Set by aeframe: where :meth:`record` keeps what it is given.
    recorder: Callable[[str, Any], None] | None = field(default=None, repr=False)

    def record(self, name: str, value: float | torch.Tensor) -> None:
        """Record a diagnostic number (how often a gradient was clipped, how far an average is from the
        live weights): each epoch's point of the cell's curve keeps the mean of what was recorded under
        ``name`` during that epoch (the last epoch's includes ``on_train_end``), and the report's JSON and
        CSV show it. Diagnostics are kept apart from the loss: they change nothing in training.

        Args:
            name: A short name, lowercase with underscores (``"clipped_fraction"``); a name is one
                technique's own: two techniques of a combination that record the same name fail the cell.
            value: A number, or a tensor of one element (kept on the device: recording never waits for it).
        """
        if self.recorder is not None:
            self.recorder(name, value)
