"""Third-party techniques that act at training events, swap the optimizer or the learning-rate curve, as
docs/plugins.md shows them. Like a plugin, it imports nothing but ``aeframe`` (and torch); the tests
register it through an entry point. ``LOG`` is where the loggers write what they saw."""
from __future__ import annotations

import torch

from aeframe import LrCurve, Param, RelativeRate, Technique, hookimpl

LOG: list[tuple] = []


class Logger(Technique):
    """Writes every event it sees, with the state's step, epoch, phase and whether an optimizer exists."""

    base = "baseline"

    def __init__(self, name: str):
        self.name, self.title = name, name.title()

    def _log(self, event, state):
        LOG.append((self.name, event, state.step, state.epoch, state.phase, state.optimizer is not None))

    def on_train_start(self, state):
        self._log("train_start", state)

    def on_phase_start(self, state):
        self._log("phase_start", state)

    def on_after_backward(self, state):
        assert all(p.grad is not None for p in state.model.parameters() if p.requires_grad)
        self._log("after_backward", state)

    def on_after_step(self, state):
        self._log("after_step", state)

    def on_epoch_end(self, state):
        self._log("epoch_end", state)

    def on_phase_end(self, state):
        self._log("phase_end", state)

    def on_train_end(self, state):
        self._log("train_end", state)


class Zeroing(Technique):
    """Evaluates a model whose weights are all zero, and puts the live ones back: its evaluations show it."""

    name, title, base = "zeroing", "Zeroing", "baseline"

    def around_evaluation(self, state):
        kept = [p.detach().clone() for p in state.model.parameters()]
        with torch.no_grad():
            for p in state.model.parameters():
                p.zero_()
        yield
        with torch.no_grad():
            for p, k in zip(state.model.parameters(), kept):
                p.copy_(k)


class Zeroing2(Zeroing):
    name, title = "zeroing-2", "Zeroing 2"


class SGD(Technique):
    """SGD with Nesterov momentum in place of AdamW, at ten times the rates AdamW would have had."""

    name, title, base = "sgd", "SGD", "baseline"
    params = (Param("momentum", float, 0.9, "SGD's momentum"),)
    learning_rates = {"*": RelativeRate(10)}

    def build_optimizer(self, ctx):
        momentum = ctx.params["momentum"]
        return lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=momentum, nesterov=True, weight_decay=5e-4)


class HalfRate(Technique):
    """Halves every phase's rate: with sgd's ten times, five times."""

    name, title, base = "half-rate", "Half Rate", "baseline"
    learning_rates = {"*": RelativeRate(0.5)}


class NoDecay(Technique):
    """Wraps whatever optimizer the cell has: weight decay off in every group."""

    name, title, base = "no-decay", "No Decay", "baseline"

    def wrap_optimizer(self, make_optimizer, ctx):
        def make(groups):
            optimizer = make_optimizer(groups)
            for group in optimizer.param_groups:
                group["weight_decay"] = 0.0
            return optimizer

        return make


class Constant(Technique):
    """A flat learning rate at the phase's peak, after a linear warm-up."""

    name, title, base = "constant", "Constant", "baseline"
    params = (Param("warmup", float, 0.1, "share of each phase warming up"),)

    def build_lr_curve(self, ctx):
        warmup = ctx.params["warmup"]
        return LrCurve(lambda q, max_lr: max_lr * min(1.0, q / warmup) if warmup else max_lr, name="constant")


class RateProbe(Technique):
    """Records the first group's learning rate at every step (a diagnostic), to see the curve in effect."""

    name, title, base = "rate-probe", "Rate Probe", "baseline"

    def on_after_backward(self, state):
        state.record("lr", float(state.optimizer.param_groups[0]["lr"]))


class Echo(Technique):
    """Records a diagnostic the rate probe records too: their combination fails, naming both."""

    name, title, base = "echo", "Echo", "baseline"

    def on_epoch_end(self, state):
        state.record("lr", 1.0)


class WrongPhase(Technique):
    """Declares a rate for a phase the Baseline's schedule does not have."""

    name, title, base = "wrong-phase", "Wrong Phase", "baseline"
    learning_rates = {"run 3": 1e-3}


class EveryPhase(Technique):
    """Declares one absolute rate for every phase."""

    name, title, base = "every-phase", "Every Phase", "baseline"
    learning_rates = {"*": 5e-4}


@hookimpl
def register_techniques(register):
    for technique in (Logger("logger-a"), Logger("logger-b"), Zeroing(), Zeroing2(), SGD(), HalfRate(), NoDecay(),
                      Constant(), RateProbe(), Echo(), WrongPhase(), EveryPhase()):
        register(technique)
