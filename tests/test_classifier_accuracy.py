"""The reference classifier behind "Classifier Accuracy" and its "Original Image" value."""
import json
import os
from pathlib import Path

import pytest
import torch

from aeframe import CellContext, Metric
from aeframe.training.metric_set import MetricSet
from aeframe_builtins.metrics import reference_classifier
from aeframe_builtins.metrics.classifier_accuracy import ClassifierAccuracy
from aeframe_builtins.datasets.shapes import CLASSES, Shapes, generate
from conftest import TINY_SHAPES

CPU = torch.device("cpu")
# The tests' usual dataset, generated as the dataset plugin generates it: its reference classifier, in the
# run's cache, is the one every bench of it uses (trained once per run).
SPEC = TINY_SHAPES


@pytest.fixture(scope="module")
def shapes_data():
    from aeframe import ImageData

    return ImageData(train=generate(256, 0, "train"), test=generate(64, 0, "test"), classes=list(CLASSES))


def context(data, cache_dir: Path, spec: str = SPEC) -> CellContext:
    return CellContext(shape=data.shape, dataset="shapes", num_classes=10, seed=0, device=CPU, data_dir=cache_dir,
                       cache_dir=cache_dir, load_dataset=lambda text: data, dataset_spec=spec)


@pytest.fixture(scope="module")
def trained(shapes_data) -> Path:
    """The run's cache directory, holding the classifier trained on ``shapes_data`` (once per run)."""
    cache = Path(os.environ["AEFRAME_CACHE"])
    prepared(shapes_data, cache)
    return cache


def prepared(data, cache_dir: Path) -> Metric:
    """A cell's copy of the metric, prepared for ``data`` as a run prepares it."""
    [metric] = MetricSet([ClassifierAccuracy()]).for_cell(context(data, cache_dir))
    return metric


def score(metric: Metric, images: torch.Tensor, labels: torch.Tensor) -> float:
    metric.start(None)
    for start in range(0, len(images), 128):
        batch = images[start : start + 128].float() / 255
        metric.update(batch, batch, labels[start : start + 128])
    return metric.result()


def test_the_reference_classifier_is_far_above_chance_and_an_identity_autoencoder_scores_it(shapes_data, trained):
    metric = prepared(shapes_data, trained)
    reference = metric.details()["reference"]
    assert reference > 0.6  # ten balanced classes: chance is 0.1
    # Reconstructions equal to the originals score exactly the Original Image accuracy.
    assert score(metric, shapes_data.test.images, shapes_data.test.labels) == reference
    details = metric.details()
    # 256 images: 6 epochs would be 6 steps; the recipe's minimum applies, up to its 100 epochs.
    assert details["steps"] == 100 and details["batch"] == 256 and details["train_seconds"] > 0
    assert details["about"].startswith("top-1 against the true labels of a CNN") and "from scratch" in details["about"]


def test_worse_reconstructions_score_lower(shapes_data, trained):
    metric = prepared(shapes_data, trained)
    blurred = torch.nn.functional.avg_pool2d(shapes_data.test.images.float(), 8, stride=1, padding=0)
    blurred = torch.nn.functional.interpolate(blurred, size=32).round().to(torch.uint8)
    assert score(metric, blurred, shapes_data.test.labels) < metric.details()["reference"] - 0.2


def test_the_classifier_is_cached_and_reused(shapes_data, trained, monkeypatch):
    first = prepared(shapes_data, trained)
    assert reference_classifier.cache_paths(trained, SPEC, shapes_data)[0].is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(reference_classifier, "train_reference", no_training)
    second = prepared(shapes_data, trained)
    assert second.details()["reference"] == first.details()["reference"]
    assert score(second, shapes_data.test.images, shapes_data.test.labels) == first.details()["reference"]


def test_training_leaves_the_cells_random_stream_alone(tmp_path, monkeypatch):
    from aeframe import ImageData

    small = ImageData(train=generate(64, 0, "train"), test=generate(16, 0, "test"), classes=[str(i) for i in range(10)])
    # A few steps draw from the generators as many do; how well it classifies is not the point here.
    monkeypatch.setattr(reference_classifier, "training_steps", lambda images: (16, 5))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ClassifierAccuracy().prepare(context(small, tmp_path, "shapes[train=64,test=16]"))  # trains: tmp_path is empty
    assert torch.equal(torch.rand(3), expected)


# -- the reference classifier on small datasets, and one that is at chance --------------------------------


def _bench_json(cli, tmp_path, dataset: str, registry=None) -> tuple[dict, str]:
    """``aeframe bench -t baseline -d DATASET --epochs 1 --format json``: its only table, and stderr."""
    result = cli("bench", "-t", "baseline", "-d", dataset, "--epochs", "1", "--format", "json", "--store", "r.sqlite",
                 cwd=tmp_path, registry=registry)
    assert result.returncode == 0, result.stderr
    [table] = json.loads(result.stdout)["datasets"][0]["tables"]
    return table, result.stderr


@pytest.mark.parametrize("images, batch, steps", [
    (1438, 256, 300),  # 6 epochs were 30 steps, and the classifier predicted one class (0.10)
    (256, 256, 100),  # the minimum, up to 100 epochs: past them a few hundred images are memorised
    (64, 64, 100),
    (60000, 256, 1404),  # Fashion-MNIST keeps its 6 epochs
    (1_000_000, 256, 2000),  # and a huge dataset stops at the most a reference needs
])
def test_small_datasets_train_the_reference_classifier_for_its_minimum_of_steps(images, batch, steps):
    assert reference_classifier.training_steps(images) == (batch, steps)


def test_a_small_dataset_gets_a_reference_classifier_clearly_above_chance(tmp_path, cli, trained):
    # Trained on 256 images for the recipe's 100 epochs (with 6 epochs it stayed at chance, 0.10).
    table, stderr = _bench_json(cli, tmp_path, SPEC)
    reference = table["reference"]["classifier_accuracy"]
    assert reference["reference"] > 0.5  # ten balanced classes: chance is 0.1
    assert reference["at_chance"] is False and reference["steps"] == 100
    assert "not_scored" not in table["rows"][0]
    assert table["rows"][0]["metrics"]["classifier_accuracy"]["mean"] > 0.1
    assert "at chance" not in stderr


class NoiseLabels(Shapes):
    """Shapes whose labels are drawn at random: no classifier can beat chance on its test split."""

    name, title = "noise-labels", "Noise Labels"

    def load(self, data_dir, params):
        data = super().load(data_dir, params)
        gen = torch.Generator().manual_seed(0)
        for split in (data.train, data.test):
            split.labels = torch.randint(0, 10, (len(split),), generator=gen)
        return data


def test_a_reference_classifier_at_chance_is_reported_instead_of_scoring_reconstructions(tmp_path, cli, registry,
                                                                                          monkeypatch):
    from aeframe.registry.plugins import Registry

    # Random labels: at chance however long it trains, so a short training says so as well as a long one.
    monkeypatch.setattr(reference_classifier, "training_steps", lambda images: (64, 20))
    noisy = Registry(executors=registry.executors,
                     techniques=registry.techniques, datasets={**registry.datasets, "noise-labels": NoiseLabels()},
                     metrics=registry.metrics, plugins=registry.plugins, owners=registry.owners)
    table, stderr = _bench_json(cli, tmp_path, "noise-labels[train=256,test=400]", noisy)
    reference = table["reference"]["classifier_accuracy"]
    assert reference["at_chance"] is True and reference["reference"] < 0.2
    mark = f"reference classifier at chance ({reference['reference']:.2f})"
    [row] = table["rows"]
    assert row["not_scored"] == {"classifier_accuracy": mark}
    assert row["metrics"]["classifier_accuracy"] is None  # no number from a classifier that cannot classify
    assert row["metrics"]["mse"]["mean"] > 0  # the other metrics are scored as ever
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: the reference classifier")]
    assert len(warnings) == 1 and "noise-labels[train=256,test=400] is at chance" in warnings[0]

    # The markdown says so in the column, where the number would be.
    report = cli("report", "--store", "r.sqlite", cwd=tmp_path, registry=noisy)
    baseline_row = next(line for line in report.stdout.splitlines() if line.startswith("| Baseline"))
    assert f"n/a: {mark}" in baseline_row


def test_runs_sharing_a_cache_train_a_classifier_once(tmp_path, monkeypatch):
    """Two runs (or an executor's workers) preparing the same dataset at once: one trains, the other waits
    for it and loads its classifier, instead of both training the same one."""
    import threading
    import time

    from aeframe import ImageData

    small = ImageData(train=generate(64, 0, "train"), test=generate(16, 0, "test"), classes=list(CLASSES))
    real, trained = reference_classifier.train_reference, []

    def slow_train(data, device, name):
        trained.append(name)
        time.sleep(0.5)  # long enough that the other one asks while this one trains
        return real(data, device, name)

    monkeypatch.setattr(reference_classifier, "train_reference", slow_train)
    monkeypatch.setattr(reference_classifier, "training_steps", lambda images: (16, 3))
    found = []
    runs = [threading.Thread(target=lambda: found.append(
        ClassifierAccuracy().prepare(context(small, tmp_path, "shapes[train=64,test=16]")))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert trained == ["shapes[train=64,test=16]"] and len(found) == 2
    assert found[0][1]["reference_accuracy"] == found[1][1]["reference_accuracy"]
