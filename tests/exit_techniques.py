"""Third-party techniques that try to end the process instead of raising, each at another moment of its
cell; the tests register this module through an entry point."""
from __future__ import annotations

import sys

from aeframe import Param, Technique, hookimpl


class Exits(Technique):
    """The Baseline, ending the process while its cell is built (sys.exit(3)), trained (GeneratorExit after a step) or
    evaluated after training (sys.exit("bye")), as ``when`` says."""

    name, title, base = "exits", "Exits", "baseline"
    params = (Param("when", str, "never", "build, train, evaluate or never"),)
    evaluations = 0

    def wrap_model(self, model, ctx):
        if ctx.params["when"] == "build":
            sys.exit(3)
        return model

    def on_after_step(self, state):
        if state.params["when"] == "train":
            raise GeneratorExit

    def around_evaluation(self, state):
        # Each cell has its own copy of the technique: under --epochs 1, its first evaluation is the
        # epoch's, during training, and its second the cell's final one.
        self.evaluations += 1
        if self.evaluations == 2 and state.params["when"] == "evaluate":
            sys.exit("bye")
        yield


@hookimpl
def register_techniques(register):
    register(Exits())
