"""Training real cells on the generated shapes dataset with tiny budgets."""
from __future__ import annotations


import pytest
import torch

from aeframe import Technique
from aeframe.cells.budget import Budget
from aeframe.training.cell import run_cell
from aeframe.execution.environment import device_info, versions
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

from conftest import TINY_SHAPES, cell_data, metric_set

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shapes_data(registry):
    return cell_data(TINY_SHAPES, registry)


def one_cell(registry, technique="baseline", budget=Budget(epochs=1), seed=0):
    comp = resolve_technique(technique, registry)
    dataset = resolve_dataset(TINY_SHAPES, registry)
    return plan_cells([comp], [dataset], seed + 1, budget, device_info(CPU), versions(), registry)[seed]


def test_same_cell_and_seed_give_the_same_numbers(registry, shapes_data, workspace):
    cell = one_cell(registry, budget=Budget(epochs=2))
    a = run_cell(cell, shapes_data, metric_set(registry), CPU, workspace, registry)
    b = run_cell(cell, shapes_data, metric_set(registry), CPU, workspace, registry)
    assert a.status == b.status == "done"
    assert a.metrics == b.metrics
    assert [e["train_loss"] for e in a.curve] == [e["train_loss"] for e in b.curve]
    other = run_cell(one_cell(registry, budget=Budget(epochs=2), seed=1), shapes_data, metric_set(registry), CPU, workspace, registry)
    assert other.metrics != a.metrics


def test_epoch_budget_record(registry, shapes_data, workspace):
    record = run_cell(one_cell(registry, budget=Budget(epochs=3)), shapes_data, metric_set(registry), CPU, workspace, registry)
    assert record.status == "done"
    assert record.stats["epochs"] == 3.0 and record.stats["steps"] == 3 * (256 // 128)
    assert record.stats["params"] == 3_080_629
    assert [e["epoch"] for e in record.curve] == [1, 2, 3]
    assert record.curve[-1]["step"] == 6
    assert record.stats["images_per_second"] == pytest.approx(6 * 128 / record.stats["train_seconds"])
    assert set(record.metrics) == {"mae", "mse", "psnr", "ssim", "classifier_accuracy"}
    # The curve's last test MSE and the final evaluation measure the same model the same way.
    assert record.metrics["mse"] == pytest.approx(record.curve[-1]["test_mse"], rel=1e-6)
    assert record.config.protocol.phases[1].max_lr == [1e-3]


def test_a_few_epochs_reduce_the_loss(registry, shapes_data, workspace):
    record = run_cell(one_cell(registry, budget=Budget(epochs=4)), shapes_data, metric_set(registry), CPU, workspace, registry)
    losses = [e["train_loss"] for e in record.curve]
    assert losses[-1] < 0.7 * losses[0]


def test_time_budget_stops_mid_epoch(registry, workspace):
    data = cell_data("shapes[train=20000,test=128]", registry)
    cell = one_cell(registry, budget=Budget(epochs=15, seconds=1.0))
    record = run_cell(cell, data, metric_set(registry), CPU, workspace, registry)
    assert record.status == "done"
    steps, seconds = record.stats["steps"], record.stats["train_seconds"]
    assert 0 < record.stats["epochs"] < 1  # 156 steps per epoch; one second allows far fewer
    assert record.stats["epochs"] == pytest.approx(steps / 156)
    # It stopped at the first step that reached the limit (test_budget checks the one-step bound
    # with a fake clock; wall-clock bounds would be flaky on a shared machine).
    assert seconds >= 1.0
    assert len(record.curve) == 1 and record.curve[0]["step"] == steps


class Explodes(Technique):
    name, title, base = "explodes", "Explodes", "baseline"

    def wrap_loss(self, loss, ctx):
        return lambda out, target: loss(out, target) * float("nan")


class Raises(Technique):
    name, title, base = "raises", "Raises", "baseline"

    def wrap_model(self, model, ctx):
        raise RuntimeError("boom")


class WrongShape(Technique):
    name, title, base = "wrong-shape", "Wrong Shape", "baseline"

    def wrap_model(self, model, ctx):
        return torch.nn.Sequential(model, torch.nn.AvgPool2d(2))


class ReusesUnknownCost(Technique):
    """Reuses work from a cache that did not keep its cost (pretrained-resnet's body cached by 0.1.0)."""

    name, title, base = "reuses-unknown-cost", "Reuses Unknown Cost", "baseline"

    def wrap_model(self, model, ctx):
        ctx.prepared_outside_budget("pretrained something earlier", None, reused=True)
        return model


@pytest.fixture
def toy_registry(registry):
    from aeframe.registry.plugins import Registry

    toys = Registry(executors=registry.executors,
                    techniques=dict(registry.techniques), datasets=registry.datasets, metrics=registry.metrics)
    for tech in (Explodes(), Raises(), WrongShape(), ReusesUnknownCost()):
        toys.techniques[tech.name] = tech
    return toys


def test_nan_loss_is_recorded_as_diverged(toy_registry, shapes_data, workspace):
    record = run_cell(one_cell(toy_registry, "explodes"), shapes_data, metric_set(toy_registry), CPU, workspace, toy_registry)
    assert record.status == "diverged"
    assert record.error == "training loss became nan by step 1 (epoch 1)"
    assert len(record.curve) == 1


def test_a_preparation_of_unknown_cost_leaves_the_outside_budget_total_unknown(toy_registry, shapes_data, workspace):
    # It was stored as 0 s: the leaderboard's Outside Budget column read "0.0s" for a 2-minute pretraining.
    record = run_cell(one_cell(toy_registry, "reuses-unknown-cost"), shapes_data, metric_set(toy_registry), CPU, workspace, toy_registry)
    assert record.status == "done"
    assert record.stats["preparation"] == [{"what": "pretrained something earlier", "seconds": None, "reused": True}]
    assert "outside_budget_seconds" not in record.stats


def test_exception_becomes_a_failed_record_with_traceback(toy_registry, shapes_data, workspace):
    record = run_cell(one_cell(toy_registry, "raises"), shapes_data, metric_set(toy_registry), CPU, workspace, toy_registry)
    assert record.status == "failed"
    assert record.error.startswith("RuntimeError: boom\n")
    assert "Traceback" in record.error and "wrap_model" in record.error


def test_wrong_output_shape_names_the_technique(toy_registry, shapes_data, workspace):
    record = run_cell(one_cell(toy_registry, "wrong-shape"), shapes_data, metric_set(toy_registry), CPU, workspace, toy_registry)
    assert record.status == "failed"
    assert record.error.splitlines()[0] == (
        "AeframeError: technique 'Wrong Shape' built a model whose output has shape (3, 16, 16) for input "
        "(3, 32, 32); an autoencoder must return its input's shape"
    )
