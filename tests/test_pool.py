"""Cells packed on one device (aeframe.execution.pool): worker processes train cell specs as the driver
would, so under an epoch budget a packed cell's numbers are the ones it has alone; how many to pack
(``auto``) follows what the cells that trained alone measured."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import aeframe
from aeframe.cells.budget import Budget
from aeframe.cells.record import DONE, CellStats
from aeframe.cells.settings import Speed
from aeframe.contract.executor import DatasetGroup
from aeframe.execution.pool import CellPool, cells_per_device_auto
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique
from conftest import TINY_SHAPES

CPU = torch.device("cpu")


def _stored(store: Path) -> dict[int, tuple[dict, dict]]:
    import json
    import sqlite3

    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT config, metrics, stats FROM cells").fetchall()
    return {json.loads(c)["seed"]: (json.loads(m), json.loads(s)) for c, m, s in rows}


def test_a_packed_run_trains_each_rows_first_seed_alone_and_shows_only_its_times(tmp_path, cli):
    grid = ("bench", "-t", "baseline", "-d", TINY_SHAPES, "--seeds", "3", "--epochs", "1", "--precision", "fp32",
            "--no-channels-last")
    packed = cli(*grid, "--cells-per-device", "2", "--store", "packed.sqlite", cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    alone = cli(*grid, "--store", "alone.sqlite", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    cells, reference = _stored(tmp_path / "packed.sqlite"), _stored(tmp_path / "alone.sqlite")
    # The same cells, the same numbers; only seeds 1 and 2 shared the device.
    assert {seed: metrics for seed, (metrics, _) in cells.items()} == {
        seed: metrics for seed, (metrics, _) in reference.items()}
    assert [cells[seed][1].get("packed") for seed in (0, 1, 2)] == [None, 2, 2]
    # The table's time is seed 0's alone, and the line under it says why.
    row = next(line for line in packed.stdout.splitlines() if line.startswith("| Baseline"))
    cols = [c.strip() for c in row.split("|")[1:-1]]
    assert "±" not in cols[6] and "‡" not in cols[6]
    assert ("Cells packed: 2 of 3 trained 2 at a time on the device (--cells-per-device); times and images/s are "
            "from the cells that trained alone") in packed.stdout


@pytest.mark.parametrize("cells", ["2", "auto"])
def test_packing_is_refused_with_a_time_budget_and_by_executors_that_do_not_pack(tmp_path, cli, cells):
    timed = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--time-budget", "5s", "--cells-per-device", cells,
                "--store", "r.sqlite", cwd=tmp_path)
    assert timed.returncode == 2
    assert timed.stderr.strip().splitlines()[-1] == (
        f"Error: --cells-per-device {cells} with --time-budget: cells sharing the device would each measure their "
        "neighbours' work as their own; give --epochs instead, or leave out --cells-per-device")
    ray = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--executor", "ray",
              "--cells-per-device", cells, "--store", "r.sqlite", cwd=tmp_path)
    assert ray.returncode == 2 and "--cells-per-device does not apply to --executor ray" in ray.stderr
    assert not (tmp_path / "r.sqlite").exists()


def test_a_worker_that_dies_fails_its_cell_and_a_new_one_trains_the_rest(registry, tmp_path):
    choice = resolve_dataset(TINY_SHAPES, registry)
    data = choice.plugin.load(Path("."), choice.params)
    specs = [spec.keyed(data.fingerprint()) for spec in plan_cells(
        [resolve_technique("baseline", registry)], [choice], 2, Budget(epochs=1), {"type": "cpu", "name": "test"},
        {"aeframe": aeframe.__version__, "torch": torch.__version__.split("+")[0]}, registry,
        speed=Speed("fp32", False), metrics=tuple(registry.metrics))]
    pool = CellPool(1, CPU, 1, tmp_path, Path(os.environ["AEFRAME_CACHE"]))
    try:
        pool.processes[0].kill()  # as the kernel's OOM killer would: SIGKILL
        pool.processes[0].join()
        records = list(pool.train([DatasetGroup(TINY_SHAPES, data, specs)]))
    finally:
        pool.close()
    assert [r.status for r in records] == ["failed", DONE]
    assert records[0].error == ("the worker process training it died (exit code -9); a cell that ran out of memory "
                                "needs fewer --cells-per-device")
    assert records[1].key == specs[1].key and records[1].metrics["mse"] > 0


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_count_that_is_not_one_or_more_or_auto_is_refused(tmp_path, cli, value):
    ran = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--cells-per-device", value, cwd=tmp_path)
    assert ran.returncode == 2
    assert (f"Invalid value for '--cells-per-device': {value!r} is neither a whole number of at least 1 nor auto"
            in ran.stderr)


def test_auto_on_a_cpu_trains_every_cell_alone_and_says_why(tmp_path, cli):
    ran = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--seeds", "2", "--epochs", "1", "--no-channels-last",
              "--cells-per-device", "auto", "--store", "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ("aeframe: --cells-per-device auto: 1 at a time (on a CPU one cell's threads already use every core)"
            in ran.stderr)
    cells = _stored(tmp_path / "r.sqlite")
    assert [cells[seed][1].get("packed") for seed in (0, 1)] == [None, None]
    assert "Cells packed" not in ran.stdout


def _alone(busy: float | None, peak: int | None, status: str = DONE) -> SimpleNamespace:
    """What the rule reads of a record that trained alone: its status and stats."""
    return SimpleNamespace(status=status, stats=CellStats(device_busy_share=busy, gpu_peak_memory=peak))


GIB = 2**30
GPU = torch.device("cuda")  # a device object only: the memory and cores are given


@pytest.mark.parametrize(("alone", "memory", "cores", "expected", "why"), [
    # The busiest row decides: 0.9 / 0.2 -> 4 cells, where memory and cores allow more.
    ([_alone(0.05, GIB), _alone(0.2, GIB)], 80 * GIB, 16, 4, "the busiest row kept the GPU busy 20%"),
    # Memory: 0.8 x 8 GiB over (2 GiB + a context's 0.75 GiB) -> 2.
    ([_alone(0.01, 2 * GIB)], 8 * GIB, 16, 2, "memory for 2"),
    # Cores: one stays with the driver.
    ([_alone(0.01, GIB)], 80 * GIB, 4, 3, "4 CPU cores for 3"),
    ([_alone(0.01, GIB)], 80 * GIB, 64, 8, "at most 8"),
    ([_alone(0.95, GIB)], 80 * GIB, 16, 1, "room for 1"),
    # Nothing measured (a failed cell, an older aeframe): nothing to pack by.
    ([_alone(0.1, GIB, status="failed"), _alone(None, None)], 80 * GIB, 16, 1, "measured no GPU busy share"),
])
def test_auto_packs_as_many_as_the_busiest_row_memory_and_cores_allow(alone, memory, cores, expected, why):
    cells, reason = cells_per_device_auto(alone, GPU, total_memory=memory, cores=cores)
    assert cells == expected and why in reason, reason
    assert cells_per_device_auto(alone, CPU) == (1, "on a CPU one cell's threads already use every core")
