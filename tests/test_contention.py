"""A time-budgeted bench knows when its clock was shared: real busy processes on the same CPUs mark
the cell's times with ‡; a run on an idle machine is not marked."""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aeframe.cells.record import BUSY_BELOW
from aeframe.registry.plugins import Registry

DATASET = "shapes[train=256,test=64]"


def _without_classifier(registry) -> Registry:
    # Its reference classifier would train under the busy processes too, for minutes.
    return Registry(executors=registry.executors, techniques=registry.techniques, datasets=registry.datasets,
                    metrics={k: m for k, m in registry.metrics.items() if k != "classifier_accuracy"},
                    plugins=registry.plugins, owners=registry.owners)


def _bench(cli, tmp_path: Path, registry, store: str):
    result = cli("bench", "-t", "baseline", "-d", DATASET, "--time-budget", "3s", "--store", store,
                 cwd=tmp_path, registry=registry)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / store) as db:
        [stats] = [json.loads(s) for (s,) in db.execute("SELECT stats FROM cells")]
    return result, stats


def _busy_row(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("| Baseline"))


def test_a_cell_trained_beside_busy_processes_is_marked(tmp_path, cli, registry):
    # As many busy processes as twice the cores: whatever torch's thread count, it gets a minority share.
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        result, stats = _bench(cli, tmp_path, _without_classifier(registry), "busy.sqlite")
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
    assert stats["cpu_share"] < BUSY_BELOW
    row = _busy_row(result.stdout)
    assert row.count("‡") == 3  # Training Time, Epochs, Images/s
    line = next(line for line in result.stdout.splitlines() if line.startswith("‡ trained on a busy machine"))
    assert f"Baseline: {stats['cpu_share']:.0%} of the CPU" in line and f"below {BUSY_BELOW:.0%}" in line
    assert "1 of 1 finished cells trained on a busy machine" in result.stderr

    # JSON and CSV carry the number.
    as_json = cli("report", "--store", "busy.sqlite", "--format", "json", cwd=tmp_path)
    [table] = json.loads(as_json.stdout)["datasets"][0]["tables"]
    assert table["rows"][0]["busy"] == [{"seed": 0, "cpu_share": stats["cpu_share"], "gpu_other_processes": None}]
    assert table["contention"]["busy_below"] == BUSY_BELOW
    as_csv = cli("report", "--store", "busy.sqlite", "--format", "csv", cwd=tmp_path)
    [cell] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert float(cell["cpu_share"]) == pytest.approx(stats["cpu_share"]) and cell["busy"] == "true"


def _cpu_seconds_of_other_processes() -> float | None:
    """CPU seconds used so far by every process but this one (and its children); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    mine = os.times()
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK") - (
        mine.user + mine.system + mine.children_user + mine.children_system)


def test_a_cell_on_an_idle_machine_is_not_marked(tmp_path, cli, registry):
    # Other work on this machine (another test run, say) is real contention and rightly marked: such an
    # attempt is tried again, and the test is skipped only if other processes were busy every time.
    for attempt in range(3):
        before, started = _cpu_seconds_of_other_processes(), time.perf_counter()
        result, stats = _bench(cli, tmp_path, _without_classifier(registry), f"idle{attempt}.sqlite")
        after = _cpu_seconds_of_other_processes()
        if stats["cpu_share"] >= BUSY_BELOW:
            assert "‡" not in result.stdout and "busy machine" not in result.stderr
            return
        # How many cores' worth the other processes used meanwhile.
        others = None if before is None else (after - before) / (time.perf_counter() - started)
        assert others is None or others > 0.2, f"marked busy ({stats['cpu_share']:.2f}) with nothing else running"
    pytest.skip(f"other processes kept the CPUs busy during every attempt (last cpu_share {stats['cpu_share']:.2f})")
