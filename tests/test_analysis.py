"""The report's analysis of the 0.1.0 store: each table computed once, every output rendered from it."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

import aeframe.report.analysis
from aeframe.report.leaderboard import page_markdown
from aeframe.report.render import analyse, write
from aeframe.store.sqlite_store import Store

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def records(tmp_path):
    shutil.copy(DATA / "store-0.1.0.sqlite", tmp_path / "store.sqlite")
    with Store(tmp_path / "store.sqlite", write=False) as store:
        return store.records()


@pytest.fixture
def metrics(registry):
    return list(registry.metrics.values())


def test_the_analysis_holds_the_tables_their_rows_and_what_is_not_in_them(records, metrics):
    report = analyse(records, metrics)
    assert [d.name for d in report.datasets] == ["shapes", "cifar10"]
    shapes, cifar = report.datasets
    assert [t.heading for t in shapes.tables] == [
        "Budget: 1 epoch per cell · Learning rates: each technique's own (the study's) · Precision: bf16",
        "Budget: 1 epoch per cell · Learning rates: each technique's own (the study's) · Precision: fp32",
        "Budget: 2 epochs per cell · Learning rates: a range test per cell ('valley'), its time in the LR Find column"
        " · Precision: bf16",
    ]
    bf16 = shapes.tables[0]
    assert [row.label for row in bf16.rows] == ["Baseline", "Pixel Shuffle"]
    assert [row.seeds for row in bf16.rows] == [[0, 1], [0, 1]]
    baseline, shuffle = bf16.rows
    assert baseline.metrics["mse"].values == [0.24669338693635467, 0.21969778986489374]
    assert baseline.metrics["mse"].ci95 is not None and shuffle.params == [3079042.0]
    assert {"metrics.mse", "metrics.psnr", "metrics.classifier_accuracy"} <= baseline.best
    assert shuffle.best == {"stats.images_per_second"}
    assert bf16.references["classifier_accuracy"]["reference"] == 0.09375
    assert bf16.about[0].startswith("Classifier Accuracy: top-1 against the true labels")
    assert [row.label for row in bf16.time_to_quality.rows] == ["Baseline", "Pixel Shuffle"]
    assert not bf16.time_to_quality.comparable  # one epoch: no evaluation before the end of the shortest row
    assert [(e.label, e.seed, e.status) for e in shapes.not_done] == [
        ("Pretraining [weights=/nowhere/resnet34.pth]", 0, "skipped"),
        ("Pretraining [weights=/nowhere/resnet34.pth]", 1, "skipped")]
    assert cifar.tables == [] and [(e.label, e.seed) for e in cifar.not_done] == [("cifar10", None)]
    assert [c.title for c in shapes.tables[2].columns][-1] == "LR Find"  # shown only where a cell has it
    assert report.done_count == 6 and len(report.cells) == 9
    assert list(report.protocols) == ["Shapes"]
    assert list(report.protocols["Shapes"]) == ["Baseline", "Pixel Shuffle", "Progressive Resizing"]


def test_each_row_is_compared_with_the_reference_row_by_a_paired_t_test(records, metrics):
    shapes = analyse(records, metrics).datasets[0]
    bf16, fp32, lr_find = shapes.tables
    baseline, shuffle = bf16.rows
    assert bf16.reference_label == "Baseline" and baseline.comparisons is None
    mse = shuffle.comparisons["mse"]
    assert (mse.pairs, mse.mean_difference, mse.t, mse.p) == (
        2, pytest.approx(0.02280776453585054), pytest.approx(2.906645800690997), pytest.approx(0.21094692977622434))
    assert list(shuffle.comparisons) == [m.name for m in metrics]
    assert not any(c.significant for c in shuffle.comparisons.values()) and bf16.marked_pairs == []
    assert fp32.reference_label == "Baseline" and [row.comparisons for row in fp32.rows] == [None]
    assert lr_find.reference_label is None and [row.comparisons for row in lr_find.rows] == [None]


def test_statistics_are_computed_once_and_the_renderers_only_read_them(records, metrics, monkeypatch):
    tests = []
    paired_t_test = aeframe.report.analysis.paired_t_test
    monkeypatch.setattr(aeframe.report.analysis, "paired_t_test", lambda a, b: tests.append(1) or paired_t_test(a, b))
    report = analyse(records, metrics)
    # One comparison per metric of the one row that has a reference row to be compared with.
    assert len(tests) == len(metrics)

    def computed_again(*args, **kwargs):
        raise AssertionError("a renderer computed statistics")

    for name in ("paired_t_test", "mean_std", "confidence_interval"):
        monkeypatch.setattr(aeframe.report.analysis, name, computed_again)
        monkeypatch.setattr(f"aeframe.report.stats.{name}", computed_again)
    outputs = {fmt: write(report, fmt) for fmt in ("markdown", "json", "csv")}
    page = page_markdown(report, "aeframe report --docs leaderboard.md", datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert outputs["markdown"].rstrip("\n") == (DATA / "report-0.1.0.md").read_text().rstrip("\n")
    assert outputs["json"].rstrip("\n") == (DATA / "report-0.1.0.json").read_text().rstrip("\n")
    assert outputs["csv"].rstrip("\n") == (DATA / "report-0.1.0.csv").read_text().rstrip("\n")
    assert outputs["markdown"].rstrip("\n") in page
