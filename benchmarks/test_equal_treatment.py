"""Equal treatment, timed: the first and the second cell of a technique in one run train at the same rate.

Every cell's one-time set-up (resized copies, the layout, kernel creation) is paid before its clock
starts (aeframe/speed/preparation.py), so the first cell of a run is not slower than the next. That
is a claim about wall time, so it is checked here, on an idle machine, rather than in tests/ (which
check that the set-up happens off the clock without timing anything).
"""
from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from aeframe.cli import cli

GRID = ("-t", "baseline", "-t", "progressive-resizing", "-d", "shapes[train=1024,test=64]", "--epochs", "2",
        "--seeds", "2")


def test_first_and_second_cell_train_at_the_same_rate(benchmark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AEFRAME_CACHE", str(tmp_path / "cache"))

    def run() -> None:
        done = CliRunner().invoke(cli, ["bench", *GRID, "--store", "r.sqlite"], catch_exceptions=False)
        assert done.exit_code == 0, done.output

    benchmark.pedantic(run, rounds=1, iterations=1)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        rows = [(json.loads(c), json.loads(s)) for c, s in db.execute("SELECT config, stats FROM cells ORDER BY rowid")]
    busy = [config["label"] for config, stats in rows if stats.get("cpu_share", 1.0) < 0.75]
    assert not busy, f"the machine was busy while these cells trained ({busy}): run the benchmarks on an idle machine"
    ratios = {}
    for label in ("Baseline", "Progressive Resizing"):
        first, second = (stats["images_per_second"] for config, stats in rows if config["label"] == label)
        ratios[label] = first / second
        assert 0.75 < first / second < 1.33, (label, first, second)
    benchmark.extra_info["first_over_second_images_per_second"] = ratios
