"""The reference classifier behind "Classifier Accuracy" and its "Original Image" value."""
import json
from pathlib import Path

import pytest
import torch

from aeframe import CellContext, Metric
from aeframe.training.metric_set import MetricSet
from aeframe_builtins.metrics import reference_classifier
from aeframe_builtins.metrics.classifier_accuracy import ClassifierAccuracy
from aeframe_builtins.datasets.shapes import Shapes, generate

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shapes_data():
    from aeframe import ImageData

    return ImageData(train=generate(3000, 0, "train"), test=generate(500, 0, "test"), classes=[str(i) for i in range(10)])


def context(data, cache_dir: Path) -> CellContext:
    return CellContext(shape=data.shape, dataset="shapes", num_classes=10, seed=0, device=CPU, data_dir=cache_dir,
                       cache_dir=cache_dir, load_dataset=lambda text: data, dataset_spec="shapes[train=3000,test=500]")


@pytest.fixture(scope="module")
def trained(shapes_data, tmp_path_factory) -> Path:
    """A cache directory holding the classifier trained on ``shapes_data`` (trained once for this module)."""
    cache = tmp_path_factory.mktemp("classifier-cache")
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
    # 3,000 images: 6 epochs would be 66 steps; the recipe's minimum applies.
    assert details["steps"] == details["recipe"]["min_steps"] and details["train_seconds"] > 0
    assert details["about"].startswith("top-1 against the true labels of a CNN") and "from scratch" in details["about"]


def test_worse_reconstructions_score_lower(shapes_data, trained):
    metric = prepared(shapes_data, trained)
    blurred = torch.nn.functional.avg_pool2d(shapes_data.test.images.float(), 8, stride=1, padding=0)
    blurred = torch.nn.functional.interpolate(blurred, size=32).round().to(torch.uint8)
    assert score(metric, blurred, shapes_data.test.labels) < metric.details()["reference"] - 0.2


def test_the_classifier_is_cached_and_reused(shapes_data, trained, monkeypatch):
    first = prepared(shapes_data, trained)
    assert len(list((trained / "classifier").glob("*.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(reference_classifier, "train_reference", no_training)
    second = prepared(shapes_data, trained)
    assert second.details()["reference"] == first.details()["reference"]
    assert score(second, shapes_data.test.images, shapes_data.test.labels) == first.details()["reference"]


def test_training_leaves_the_cells_random_stream_alone(tmp_path):
    from aeframe import ImageData

    small = ImageData(train=generate(512, 0, "train"), test=generate(64, 0, "test"), classes=[str(i) for i in range(10)])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ClassifierAccuracy().prepare(context(small, tmp_path))  # trains: nothing is cached in tmp_path
    assert torch.equal(torch.rand(3), expected)


# -- the reference classifier on small datasets, and one that is at chance --------------------------------


def _bench_json(cli, tmp_path, dataset: str, registry=None) -> tuple[dict, str]:
    """``aeframe bench -t baseline -d DATASET --epochs 1 --format json``: its only table, and stderr."""
    result = cli("bench", "-t", "baseline", "-d", dataset, "--epochs", "1", "--format", "json", "--store", "r.sqlite",
                 cwd=tmp_path, registry=registry)
    assert result.returncode == 0, result.stderr
    [table] = json.loads(result.stdout)["datasets"][0]["tables"]
    return table, result.stderr


def test_a_small_dataset_gets_a_reference_classifier_clearly_above_chance(tmp_path, cli):
    # 1,438 training images: 6 epochs were 30 steps, and the classifier predicted one class (0.10).
    table, stderr = _bench_json(cli, tmp_path, "shapes[train=1438,test=359]")
    reference = table["reference"]["classifier_accuracy"]
    assert reference["reference"] > 0.5  # ten balanced classes: chance is 0.1
    assert reference["at_chance"] is False and reference["steps"] >= reference["recipe"]["min_steps"]
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


def test_a_reference_classifier_at_chance_is_reported_instead_of_scoring_reconstructions(tmp_path, cli, registry):
    from aeframe.registry.plugins import Registry

    noisy = Registry(executors=registry.executors,
                     techniques=registry.techniques, datasets={**registry.datasets, "noise-labels": NoiseLabels()},
                     metrics=registry.metrics, plugins=registry.plugins, origin=registry.origin)
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
