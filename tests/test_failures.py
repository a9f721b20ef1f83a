"""A third-party plugin whose techniques fail in every way a cell can, run through the CLI:
the failures are stored and named, and the other cells' results are intact afterwards."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from conftest import TINY_SHAPES, installed_registry

FAULTY = '''
import torch
from torch import nn
from aeframe import Technique, hookimpl


class _FailsLater(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls > 1:
            raise RuntimeError("kaboom in training step 2")
        return self.inner(x)


class Kaboom(Technique):
    name, title, base = "kaboom", "Kaboom", "baseline"
    description = "raises in its second training step"

    def wrap_model(self, model, ctx):
        return _FailsLater(model)


class NanLoss(Technique):
    name, title, base = "nan-loss", "NaN Loss", "baseline"
    description = "its loss becomes NaN"

    def wrap_loss(self, loss, ctx):
        return lambda out, target: loss(out, target) * float("nan")


class Halves(Technique):
    name, title, base = "halves", "Halves", "baseline"
    description = "returns half-size images"

    def wrap_model(self, model, ctx):
        return nn.Sequential(model, nn.AvgPool2d(2))


@hookimpl
def register_techniques(register):
    for technique in (Kaboom(), NanLoss(), Halves()):
        register(technique)
'''


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    """The registry with the faulty plugin installed as pip would have left it."""
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-faulty", "faulty_techniques", FAULTY)


def _rows(store: Path) -> dict[str, tuple[str, str | None, dict]]:
    with sqlite3.connect(store) as db:
        return {label: (status, error, json.loads(metrics))
                for label, status, error, metrics in db.execute("SELECT label, status, error, metrics FROM cells")}


def test_failing_techniques_are_stored_named_and_summarised_and_the_other_cells_survive(tmp_path, cli, faulty):
    args = ("bench", "-t", "baseline", "-t", "kaboom", "-t", "nan-loss", "-t", "halves", "-t", "pixel-shuffle",
            "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last", "--store", "r.sqlite")
    result = cli(*args, cwd=tmp_path, registry=faulty)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr

    rows = _rows(tmp_path / "r.sqlite")
    assert {label: status for label, (status, _, _) in rows.items()} == {
        "Baseline": "done", "Kaboom": "failed", "NaN Loss": "diverged", "Halves": "failed", "Pixel Shuffle": "done"}
    # The cells after the failures ran, and the ones before kept their numbers.
    assert rows["Baseline"][2]["mse"] > 0 and rows["Pixel Shuffle"][2]["mse"] > 0
    kaboom_error = rows["Kaboom"][1]
    assert kaboom_error.startswith("RuntimeError: kaboom in training step 2\nTraceback (most recent call last):")
    assert "faulty_techniques.py" in kaboom_error  # the traceback reaches into the plugin's own file
    assert rows["NaN Loss"][1] == "training loss became nan by step 1 (epoch 1)"
    assert rows["Halves"][1].splitlines()[0] == (
        "AeframeError: technique 'Halves' built a model whose output has shape (3, 16, 16) for input (3, 32, 32); "
        "an autoencoder must return its input's shape")

    # The final summary names each failed cell, its error and whose plugin it came from.
    summary = result.stderr[result.stderr.index("2 of 5 cells failed"):]
    assert "failed: Kaboom on shapes (seed 0): RuntimeError: kaboom in training step 2; technique 'kaboom' from " \
           "plugin 'faulty' (aeframe-faulty 0.1)" in summary
    assert "failed: Halves on shapes (seed 0): AeframeError: technique 'Halves' built a model" in summary
    # The table has the cells that trained, and lists the rest with their reasons.
    assert "| Baseline " in result.stdout and "| Pixel Shuffle " in result.stdout
    assert "- Kaboom: failed (RuntimeError: kaboom in training step 2)" in result.stdout
    assert "- NaN Loss: diverged (training loss became nan by step 1 (epoch 1))" in result.stdout

    # A rerun takes the finished cells from the store and retries only the others.
    again = cli(*args, cwd=tmp_path, registry=faulty)
    assert again.returncode == 1
    assert "2 of 5 cells already done" in again.stderr
    assert _rows(tmp_path / "r.sqlite")["Baseline"] == rows["Baseline"]


@pytest.mark.parametrize("text, message", [
    ("--time-budget=5 parsecs", "cannot read '5 parsecs' as a duration"),
    ("--time-budget=0s", "duration '0s' must be positive"),
    ("--epochs=-3", "-3 is not in the range 1<=x<=1000000"),
    ("--seeds=0", "0 is not in the range 1<=x<=1000"),
    ("-t=baseline[latent=", "unbalanced brackets"),
    ("-t=baseline[=3]", "baseline[=3]"),
    ("-d=shapes[train=ten]", "bad value 'ten' for parameter 'train'"),
    ("--precision=fp8", "'fp8' is not one of"),
])
def test_more_bad_cli_values_are_usage_errors(tmp_path, cli, text, message):
    option, value = text.split("=", 1)
    extra = [] if option in ("-t", "-d") else ["-t", "baseline"]
    result = cli("bench", *extra, option, value, "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.sqlite").exists()


def test_weights_that_are_not_plain_tensors_are_refused_not_executed(tmp_path, cli):
    """Checkpoints load with weights_only=True: a pickle that would run code is refused with a message."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"conv.weight": Payload()}, tmp_path / "evil.pth")
    result = cli("bench", "-t", f"pretrained-resnet[weights={tmp_path / 'evil.pth'}]", "-d", TINY_SHAPES,
                 "--epochs", "1", "--store", "r.sqlite", cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 1
    assert "evil.pth" in result.stderr and "Traceback" not in result.stderr
