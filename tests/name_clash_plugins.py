"""A third party's plugins that reuse names the built-ins have: the technique ``pixel-shuffle`` (titled
as the built-in is), a technique that builds on it, the dataset ``shapes``, the executor ``local`` and
the metric ``mse``.
tests/test_name_clashes.py registers them through entry points; each namespace below is one plugin,
as a package may declare several entry points (``name = "module:attribute"``)."""
from __future__ import annotations

from types import SimpleNamespace

from aeframe import Executor, Metric, Technique, hookimpl
from aeframe_builtins.datasets.shapes import Shapes


class DoubledLoss(Technique):
    """Not the built-in's sub-pixel decoder: something cheap that trains apart from it."""

    name, title, base = "pixel-shuffle", "Pixel Shuffle", "baseline"
    description = "doubles the reconstruction loss"

    def wrap_loss(self, loss, ctx):
        return lambda output, target: 2 * loss(output, target)


class HalvedLoss(Technique):
    """Builds on ``pixel-shuffle``, meaning its own distribution's."""

    name, title, base = "halved-loss", "Halved Loss", "pixel-shuffle"
    description = "halves the reconstruction loss"

    def wrap_loss(self, loss, ctx):
        return lambda output, target: 0.5 * loss(output, target)


class OtherShapes(Shapes):
    title = "Other Shapes"


class OtherMSE(Metric):
    name, title, better, format = "mse", "Other MSE", "lower", ".6f"

    def update(self, recon, target, labels):
        pass

    def result(self):
        return 0.0


class OtherLocal(Executor):
    name, title = "local", "Other Local"
    description = "an executor that is never opened"

    def open(self, settings):
        raise RuntimeError("the tests never train cells with it")


@hookimpl
def register_techniques(register):
    register(DoubledLoss())
    register(HalvedLoss())


@hookimpl
def register_datasets(register):
    register(OtherShapes())


@hookimpl
def register_executors(register):
    register(OtherLocal())


@hookimpl
def register_metrics(register):
    register(OtherMSE())


techniques = SimpleNamespace(register_techniques=register_techniques)
datasets = SimpleNamespace(register_datasets=register_datasets, register_executors=register_executors)
metrics = SimpleNamespace(register_metrics=register_metrics)
