"""CUDA-graphed training steps, as far as a CPU can show them: every cell records how it stepped and
why it is eager, a capture that fails leaves the cell eager and unharmed (weights, optimizer, rates),
and the schedule's rates reach a captured graph in place. tests/test_cuda.py captures for real."""
from __future__ import annotations

import json
import sqlite3
from functools import partial

import pytest
import torch
from torch import nn

from aeframe.speed.graphs import (
    GraphUnavailable,
    TrainingSteps,
    _Snapshot,
    make_capturable,
    obstacle,
    set_beta1,
    set_rate,
)
from aeframe.cells.settings import Speed
from aeframe.contract.technique import Technique
from aeframe.planning.composition import Composition, Member
from aeframe.planning.plan import resolve_technique
from aeframe.speed.cache import SpeedCache
from aeframe.speed.step import Stepper
from aeframe.speed.step_mode import decide_step
from aeframe import study_schedule
from aeframe.speed.rehearsal import Rehearsal
from aeframe.speed.utilisation import busy_share
from conftest import TINY_SHAPES, cell_data

CUDA = torch.device("cuda")  # a device object only: nothing here runs on it


def _stats(store):
    with sqlite3.connect(store) as db:
        return [json.loads(stats) for (stats,) in db.execute("SELECT stats FROM cells ORDER BY rowid")]


def test_a_cpu_cell_trains_eagerly_and_records_why_without_cluttering_the_table(tmp_path, cli):
    ran = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last", "--store",
              "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    [stats] = _stats(tmp_path / "r.sqlite")
    assert stats["step_mode"] == "eager" and stats["step_source"] == "unavailable"
    assert stats["step_reason"] == "CUDA graphs need a CUDA GPU; this cell trains on cpu"
    assert "capture_seconds" not in stats
    assert "steps:" not in ran.stdout  # graphs were never possible here: the conditions line is silent on them


def test_graphs_asked_for_where_they_cannot_be_used_train_eagerly_and_the_table_says_why(tmp_path, cli):
    ran = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last", "--cuda-graphs",
              "--store", "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    [stats] = _stats(tmp_path / "r.sqlite")
    assert (stats["step_mode"], stats["step_source"]) == ("eager", "forced")
    assert "steps: eager (CUDA graphs need a CUDA GPU; this cell trains on cpu) for Baseline" in ran.stdout
    assert "CUDA graphs on" in ran.stderr  # the run's settings line


@pytest.mark.parametrize(("precision", "compile", "expected"), [
    ("fp32", False, None),
    ("bf16", False, None),
    ("fp16", False, "fp16's gradient scaler checks on the host"),
    ("fp32", True, "--compile traces the model itself"),
])
def test_what_rules_a_graph_out_before_trying(precision, compile, expected):
    found = obstacle(CUDA, precision, compile)
    assert found is None if expected is None else found.startswith(expected)
    assert obstacle(torch.device("cpu"), precision, compile).startswith("CUDA graphs need a CUDA GPU")


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))


def _step(model, optimizer, images):
    return Stepper().step(optimizer, lambda: nn.functional.mse_loss(model(images), images))


def test_the_state_a_capture_warms_up_with_is_put_back_so_the_cell_trains_as_it_would_eagerly():
    images = torch.rand(8, 1, 8, 8)
    untouched, untouched_optimizer = _model_and_optimizer()
    model, optimizer = _model_and_optimizer()
    snapshot = _Snapshot(model, optimizer)
    for _ in range(3):  # what a capture's warm-up does to the cell's own model
        _step(model, optimizer, images)
    assert not torch.equal(model[0].weight, untouched[0].weight)
    snapshot.restore()
    for name, value in model.state_dict().items():  # weights and BatchNorm's running statistics
        assert torch.equal(value, untouched.state_dict()[name]), name
    assert all(float(v.abs().sum()) == 0 for state in optimizer.state.values() for v in state.values())
    # From there, a step is the step a fresh optimizer takes.
    _step(model, optimizer, images)
    _step(untouched, untouched_optimizer, images)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, untouched.state_dict()[name])


def test_rates_become_device_tensors_filled_in_place_and_a_failed_capture_puts_them_back():
    model, optimizer = _model_and_optimizer()
    images = torch.rand(8, 1, 8, 8)
    _step(model, optimizer, images)  # a phase that keeps its optimizer: its state exists already
    undo = make_capturable(optimizer, torch.device("cpu"))
    group = optimizer.param_groups[0]
    lr, beta1 = group["lr"], group["betas"][0]
    assert group["capturable"] and isinstance(lr, torch.Tensor) and isinstance(beta1, torch.Tensor)
    set_rate(group, 3e-3)
    set_beta1(group, 0.85)
    # The very tensors a graph captured read the new values: nothing was replaced.
    assert group["lr"] is lr and float(lr) == pytest.approx(3e-3)
    assert group["betas"][0] is beta1 and float(beta1) == pytest.approx(0.85)
    undo()
    assert group["capturable"] is False and group["lr"] == 1e-2 and group["betas"] == (0.9, 0.99)
    set_rate(group, 5e-3)
    set_beta1(group, 0.95)
    assert group["lr"] == 5e-3 and group["betas"] == (0.95, 0.99)
    with pytest.raises(GraphUnavailable, match="the optimizer SGD has no capturable form"):
        make_capturable(torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"))


def test_a_capture_that_fails_leaves_the_cell_eager_with_the_reason_and_its_state_untouched():
    model, optimizer = _model_and_optimizer()
    untouched, untouched_optimizer = _model_and_optimizer()
    images = torch.rand(8, 1, 8, 8)
    steps = TrainingSteps(model, nn.functional.mse_loss, Stepper(), graphed=True)
    assert steps.needs_capture(optimizer, images)
    steps.capture(optimizer, images)  # on a CPU there is no CUDA stream to capture on
    assert steps.mode == "eager" and steps.reason.startswith("capturing the step failed (")
    assert not steps.needs_capture(optimizer, images)
    assert optimizer.param_groups[0]["capturable"] is False and optimizer.param_groups[0]["lr"] == 1e-2
    loss, parts = steps.step(optimizer, images)
    expected = _step(untouched, untouched_optimizer, images)
    assert float(loss.detach()) == float(expected.detach()) and set(parts) == {"reconstruction"}
    for name, value in model.state_dict().items():
        assert torch.equal(value, untouched.state_dict()[name]), name


class _Noisy(Technique):
    """A third party's wrapper that does not say whether its step may be captured."""

    name, title = "noisy", "Noisy"

    def wrap_model(self, model, ctx):
        return model


def test_only_techniques_that_declare_their_step_capturable_are_graphed_unless_asked(registry):
    baseline = resolve_technique("baseline", registry)
    assert all(t.cuda_graphs for t in registry.techniques.values())  # the built-ins declare it
    assert baseline.not_graph_safe() == []
    noisy = Composition([Member(_Noisy(), {})], lookup=registry.techniques.get, reference=registry.reference)
    assert noisy.not_graph_safe() == ["noisy"]  # its base, the Baseline, declares it
    decide = partial(decide_step, nn.Identity(), nn.functional.mse_loss, None, device=CUDA, train=None,
                     cache=SpeedCache(None), key="k")
    choice = decide(speed=Speed("bf16", False), undeclared=["noisy"])
    assert (choice.mode, choice.source) == ("eager", "not declared")
    assert choice.reason == ("technique 'noisy' does not declare its step capturable (Technique.cuda_graphs); "
                             "--cuda-graphs captures it anyway")
    assert decide(speed=Speed("bf16", False, graphs=True), undeclared=["noisy"]).mode == "graphed"
    assert decide(speed=Speed("bf16", False, graphs=False), undeclared=["noisy"]).source == "forced"
    both = decide(speed=Speed("bf16", False), undeclared=["noisy", "other"]).reason
    assert both.startswith("techniques 'noisy', 'other' do not declare their steps capturable")



def test_the_gpu_busy_share_is_not_measured_off_a_gpu(registry):
    data = cell_data(TINY_SHAPES, registry)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Sigmoid())
    rehearsal = Rehearsal(model, nn.functional.mse_loss, study_schedule(), 0, Speed(), torch.device("cpu"),
                          data.train.view(None))
    assert busy_share(rehearsal) is None  # a CPU cell is packed by nothing: --cells-per-device auto is 1
