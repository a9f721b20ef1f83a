"""``aeframe report --format json`` carries each cell's per-epoch curve as the store holds it."""
from __future__ import annotations

import json

from aeframe.store.sqlite_store import Store

from conftest import TINY_SHAPES


def test_the_json_report_has_each_epochs_point_of_a_trained_cell(cli, tmp_path):
    bench = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "2", "--no-channels-last", "--store",
                "r.sqlite", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    with Store(tmp_path / "r.sqlite", write=False) as store:
        (record,) = store.records()
    report = cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    [row] = json.loads(report.stdout)["datasets"][0]["tables"][0]["rows"]
    [cell] = row["cells"]
    assert (cell["key"], cell["seed"]) == (record.key, 0)
    assert [point["epoch"] for point in cell["curve"]] == [1, 2]
    assert cell["curve"] == record.curve
    assert {"step", "phase", "train_loss", "terms", "test_mse", "seconds"} <= set(cell["curve"][-1])
