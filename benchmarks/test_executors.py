"""The ray executor against local: a small grid end to end, and the overhead each cell pays.

1. The grid (Baseline and Pixel Shuffle on shapes[train=2048], 2 epochs, 4 seeds: 8 cells) as a user
   runs it: the real command in a subprocess, `--executor ray --cpus-per-cell 1` (two one-thread
   cells side by side on this 2-core machine, Ray's start included) against `local` (one cell at a
   time with both threads). Rounds interleave the two, after an untimed warm-up round of each that
   fills the cache (reference classifier, precision and layout choices) both then read.
2. The overhead per cell: four one-epoch cells one at a time with the same two threads, on a Ray
   cluster started beforehand (its start timed apart), against local in the same process: task
   submission and start, the dataset through the object store, the record coming back.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from aeframe.store.sqlite_store import Store

from speed_config import ROUNDS
from speed_summary import ExecutorComparison, ExecutorOverhead

GRID = ("-t", "baseline", "-t", "pixel-shuffle", "-d", "shapes[train=2048]", "--epochs", "2", "--seeds", "4",
        "--device", "cpu")
RAY = ("--executor", "ray", "--cpus-per-cell", "1")
ONE_EPOCH = ("-t", "baseline", "-d", "shapes[train=2048]", "--epochs", "1", "--seeds", "4", "--device", "cpu")


def _bench(args: tuple[str, ...], store: Path) -> float:
    """Wall seconds of ``aeframe bench ARGS`` in a subprocess, from start to exit.

    The user's cache (``$AEFRAME_CACHE``): the reference classifier of the grid's dataset is trained
    once per machine, in the first warm-up run, and never timed.
    """
    exe = Path(sys.executable).with_name("aeframe")
    started = time.perf_counter()
    done = subprocess.run([str(exe), "bench", *args, "--store", str(store)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    return wall


def _all_done(store: Path, cells: int) -> list:
    with Store(store, write=False) as opened:
        records = opened.records()
    assert len(records) == cells and all(r.status == "done" for r in records)
    return records


def test_ray_grid_against_local(benchmark, tmp_path, speed_report):
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    runs = iter(range(10_000))

    def run(kind: str, timed: bool) -> None:
        store = tmp_path / f"{kind}-{next(runs)}.sqlite"
        wall = _bench(GRID + (RAY if kind == "ray" else ()), store)
        _all_done(store, 8)
        if timed:
            walls[kind].append(wall)

    for kind in ("local", "ray"):  # warm-up: fills the cache both read (precision, layouts at 1 and 2 threads)
        run(kind, timed=False)

    def rounds() -> None:
        for number in range(ROUNDS):
            order = ("local", "ray") if number % 2 == 0 else ("ray", "local")
            for kind in order:
                run(kind, timed=True)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    comparison = ExecutorComparison("8 cells (Baseline, Pixel Shuffle x 4 seeds, shapes[train=2048], 2 epochs)",
                                    walls["local"], walls["ray"])
    speed_report.executors.append(comparison.line())
    benchmark.extra_info.update({"local_seconds": walls["local"], "ray_seconds": walls["ray"],
                                 "ray_over_local": comparison.ratios()})


def _in_process(*args: str) -> None:
    """``aeframe ARGS`` in this process, as a test's ``cli`` fixture runs it: the cluster started here is used."""
    from click.testing import CliRunner

    from aeframe.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.stderr[-3000:]


def test_ray_overhead_per_cell(benchmark, tmp_path, speed_report):
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - started
    try:
        local, distributed = [], []
        runs = iter(range(10_000))

        def run(ray_too: bool) -> tuple[float, Path]:
            store = tmp_path / f"overhead-{next(runs)}.sqlite"
            args = ONE_EPOCH + (("--executor", "ray", "--cpus-per-cell", "2") if ray_too else ())
            started = time.perf_counter()
            _in_process("bench", *args, "--store", str(store))
            return time.perf_counter() - started, store

        run(False), run(True)  # warm-up: worker processes started, caches filled

        def rounds() -> None:
            for number in range(ROUNDS):
                for ray_too in ((False, True) if number % 2 == 0 else (True, False)):
                    wall, store = run(ray_too)
                    _all_done(store, 4)
                    (distributed if ray_too else local).append(wall)

        benchmark.pedantic(rounds, rounds=1, iterations=1)
    finally:
        ray.shutdown()
    overhead = ExecutorOverhead(4, local, distributed, ray_start)
    speed_report.executors.append(overhead.line())
    benchmark.extra_info.update({"local_seconds": local, "ray_seconds": distributed,
                                 "overhead_per_cell_seconds": overhead.per_cell(), "ray_start_seconds": ray_start})
