"""One third-party technique that misbehaves in any of the ways issue 26 found, at any of the moments
of its cell, as its parameters say; the fuzz test registers this module through an entry point and
draws the combinations.

``what`` is the misbehaviour (``WHATS``), ``when`` the moment (``WHENS``): while its model is built,
in its model's training forward, after an optimizer step, or around the final evaluation.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from aeframe import Param, Technique, hookimpl

from state_techniques import KINDS


class _Boom(BaseException):
    """Neither an Exception nor an exit: what a plugin's own control flow might leak."""


def _raise(error: BaseException):
    def act() -> None:
        raise error
    return act


# The misbehaviours that return normally (global state, output) are acted on by the caller.
ENDINGS = {
    "sys-exit": lambda: sys.exit(3),
    "sys-exit-text": lambda: sys.exit("bye"),
    "generator-exit": _raise(GeneratorExit()),
    "base-exception": _raise(_Boom("boom")),
    "runtime-error": _raise(RuntimeError("boom")),
    "memory-error": _raise(MemoryError()),
    "recursion-error": _raise(RecursionError("maximum recursion depth exceeded")),
}
STATES = ("threads", "default-dtype", "anomaly-mode", "matmul-precision", "deterministic-algorithms", "grad-mode",
          "autocast", "numpy-rng", "python-rng", "torch-rng")
OUTPUTS = ("nan", "broadcast")
WHATS = (*ENDINGS, *(f"state-{kind}" for kind in STATES), *(f"output-{o}" for o in OUTPUTS))
WHENS = ("build", "forward", "after-step", "evaluation")


def misbehave(what: str) -> None:
    """Do ``what``, unless it is an output (which only a forward can return)."""
    if what in ENDINGS:
        ENDINGS[what]()
    elif what.startswith("state-"):
        KINDS[what.removeprefix("state-")].change()


class _Misbehaving(nn.Module):
    """The wrapped model, misbehaving in its training forward (after its first one: the checks of the
    first steps have their own tests), and returning NaN or a broadcasting shape in both modes."""

    def __init__(self, inner: nn.Module, what: str, when: str):
        super().__init__()
        self.inner, self.what, self.when, self.forwards = inner, what, when, 0

    def forward(self, x):
        out = self.inner(x)
        if self.when != "forward":
            return out
        if self.training and torch.is_grad_enabled():
            self.forwards += 1
            if self.forwards == 2:
                misbehave(self.what)
        if self.what == "output-nan":
            return out * float("nan")
        if self.what == "output-broadcast":
            return out.mean(dim=(2, 3), keepdim=True)
        return out


class Misbehaves(Technique):
    """The Baseline, misbehaving as ``what`` says when ``when`` says."""

    name, title, base = "misbehaves", "Misbehaves", "baseline"
    params = (Param("what", str, "runtime-error", "the misbehaviour (misbehaving_techniques.WHATS)", choices=WHATS),
              Param("when", str, "build", "the moment (misbehaving_techniques.WHENS)", choices=WHENS))
    evaluations = 0

    def wrap_model(self, model, ctx):
        if ctx.params["when"] == "build":
            misbehave(ctx.params["what"])
        return _Misbehaving(model, ctx.params["what"], ctx.params["when"])

    def on_after_step(self, state):
        if state.params["when"] == "after-step" and state.step == 2:
            misbehave(state.params["what"])

    def around_evaluation(self, state):
        # Each cell has its own copy of the technique: under --epochs 1 its second evaluation is the final one.
        self.evaluations += 1
        if self.evaluations == 2 and state.params["when"] == "evaluation":
            misbehave(state.params["what"])
        yield


@hookimpl
def register_techniques(register):
    register(Misbehaves())
