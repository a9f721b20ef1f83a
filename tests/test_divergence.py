"""A loss that becomes NaN mid-epoch stops its cell within a few steps, and the run says so and exits 1."""
from __future__ import annotations

import json
import sqlite3

import torch
from torch import nn

from aeframe import Technique
from aeframe.registry.plugins import Registry

# 2,560 images in batches of 128: 20 steps per epoch, so an end-of-epoch check would stop at step 20.
LONG_EPOCH = "shapes[train=2560,test=64]"


class _NanFromStep4(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.steps = inner, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.steps += 1
            if self.steps >= 4:
                return out * float("nan")
        return out


class NanAtStep4(Technique):
    name, title, base = "nan-at-step-4", "NaN At Step 4", "baseline"
    description = "its output, and so its loss, becomes NaN in training step 4"

    def wrap_model(self, model, ctx):
        return _NanFromStep4(model)


def _registry(registry) -> Registry:
    """The built-ins plus the NaN technique, without the classifier metric (its reference classifier
    would cost more than the cells)."""
    return Registry(executors=registry.executors,
                    techniques={**registry.techniques, NanAtStep4.name: NanAtStep4()}, datasets=registry.datasets,
                    metrics={k: m for k, m in registry.metrics.items() if k != "classifier_accuracy"},
                    plugins=registry.plugins, owners=registry.owners)


def test_nan_mid_epoch_stops_the_cell_within_a_few_steps_and_the_run_exits_1_with_a_summary(tmp_path, cli, registry):
    torch.manual_seed(0)
    result = cli("bench", "-t", "nan-at-step-4", "-d", LONG_EPOCH, "--epochs", "1", "--no-channels-last",
                 "--store", "r.sqlite", cwd=tmp_path, registry=_registry(registry))
    assert "Traceback" not in result.stderr
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        [(status, error, stats)] = db.execute("SELECT status, error, stats FROM cells").fetchall()
    assert status == "diverged"
    steps = json.loads(stats)["steps"]
    assert steps < 11  # it was 20: the end of the epoch
    assert error == f"training loss became nan by step {steps} (epoch 1)"
    # The run ends with a summary of the diverged cell and exit code 1, as for a failed one.
    assert result.returncode == 1
    summary = result.stderr[result.stderr.index("1 of 1 cells diverged"):]
    assert f"diverged: NaN At Step 4 on shapes (seed 0): training loss became nan by step {steps} (epoch 1)" in summary
    assert "- NaN At Step 4: diverged (training loss became nan by step" in result.stdout
