"""Classifier Accuracy (seed-protocol.md section 5.2): how usable the reconstructions are.

A cell's "Classifier Accuracy" is the top-1 accuracy, against the true labels, of the dataset's
reference classifier (:mod:`aeframe_builtins.metrics.reference_classifier`) on the cell's reconstructions of
the test split. The classifier is obtained once per dataset by ``prepare`` and shared by that
dataset's cells; each cell counts its correct predictions in its own copy of the metric.

A reference classifier that is not clearly above chance on the original test images would score
every reconstruction near chance too, whatever its quality: then nothing is scored (the value is
NaN) and the details say why (``not_scored``), which the table shows instead of a number.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aeframe import MeanMetric, hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe import CellContext


class ClassifierAccuracy(MeanMetric):
    """The mean over test images of "the reference classifier predicts the true label"."""

    name = "classifier_accuracy"
    title = "Classifier Accuracy"
    better = "higher"
    format = ".4f"

    prepared: tuple[nn.Module, dict[str, Any]] | None

    def prepare(self, context: CellContext) -> tuple[nn.Module, dict[str, Any]]:
        """The reference classifier of the context's dataset (trained or loaded) and its facts."""
        from aeframe_builtins.metrics.reference_classifier import obtain

        return obtain(context)

    def _at_chance(self) -> bool:
        return self.prepared is not None and bool(self.prepared[1].get("at_chance"))

    def update(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> None:
        if not self._at_chance():
            super().update(recon, target, labels)

    def result(self) -> float:
        return math.nan if self._at_chance() else super().result()

    def values(self, recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch

        if self.prepared is None:
            raise RuntimeError(f"{self.name}: no reference classifier; aeframe sets `prepared` from prepare() "
                               "before evaluating")
        model, _ = self.prepared
        with torch.no_grad():
            predicted = model(recon.clamp(0, 1)).argmax(1)
        return predicted == labels

    def details(self) -> dict[str, Any]:
        if self.prepared is None:
            return {}
        from aeframe_builtins.metrics.reference_classifier import at_chance_text, describe_training

        facts = self.prepared[1]
        about = (f"top-1 against the true labels of a CNN ({facts['recipe']['model']}) trained from scratch for "
                 f"{describe_training(facts)} on the original training split in {facts['train_seconds']:.0f} s")
        found = {"reference": facts["reference_accuracy"], "about": about, **facts}
        if facts.get("at_chance"):
            found["not_scored"] = at_chance_text(facts)
        return found


@hookimpl
def register_metrics(register):
    register(ClassifierAccuracy())
