"""The ray executor on a real local Ray cluster, started once for this module: 2 CPUs and 2 declared GPUs
that do not exist (placement is Ray's bookkeeping; the cells themselves train on the CPU)."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
import ray
import torch

from conftest import TINY_SHAPES, installed_registry

SMALL = TINY_SHAPES  # the tests' usual dataset: its reference classifier is trained once per session
EPOCHS = ("--epochs", "1", "--precision", "fp32", "--no-channels-last")


@ray.remote(num_cpus=1)
def _warm() -> int:
    """Import what a cell needs, so that two cells submitted together start together."""
    import os

    import aeframe.registry.plugins

    aeframe.registry.plugins.get_registry()
    time.sleep(0.5)  # holds its CPU, so the other call lands in the other worker process
    return os.getpid()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        assert len(set(ray.get([_warm.remote(), _warm.remote()]))) == 2
        yield
    finally:
        ray.shutdown()


def _done(store: Path) -> dict[str, dict]:
    """Key -> the stored record of every finished cell: metrics, stats, seed, label."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT key, label, seed, metrics, stats, config FROM cells WHERE status = 'done'")
        return {key: {"label": label, "seed": seed, "metrics": json.loads(metrics), "stats": json.loads(stats),
                      "config": json.loads(config)} for key, label, seed, metrics, stats, config in rows}


def test_the_same_cells_give_bit_identical_metrics_with_local_and_ray(tmp_path, cli):
    grid = ("bench", "-t", "baseline", "-t", "pixel-shuffle", "-d", SMALL, "--seeds", "2", *EPOCHS, "--device", "cpu")
    local = cli(*grid, "--store", "local.sqlite", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    # As many CPUs per cell as the local run's torch threads, so the same order of float sums.
    threads = str(torch.get_num_threads())
    distributed = cli(*grid, "--store", "ray.sqlite", "--executor", "ray", "--cpus-per-cell", threads, cwd=tmp_path)
    assert distributed.returncode == 0, distributed.stderr

    here, there = _done(tmp_path / "local.sqlite"), _done(tmp_path / "ray.sqlite")
    assert len(here) == 4 and here.keys() == there.keys()  # the keys do not depend on the executor
    for key, record in here.items():
        assert there[key]["metrics"] == record["metrics"], record["label"]
        assert there[key]["stats"]["epochs"] == record["stats"]["epochs"]
        assert there[key]["stats"]["placement"]["executor"] == "ray"
        assert there[key]["stats"]["placement"]["cpus"] == int(threads)
        assert "placement" not in record["stats"]

    # Progress on the driver: a line per finished cell, each followed by the run's count.
    lines = distributed.stderr.splitlines()
    finished = [line for line in lines if line.startswith("[") and "/4] " in line]
    assert len(finished) == 4 and all(": done 1.00 epochs in " in line for line in finished)
    assert "aeframe: 4 done, 0 running, 0 pending; " in distributed.stderr
    assert "aeframe: 1 done, " in distributed.stderr and " left" in distributed.stderr

    # Same keys, so a store made by one executor resumes with the other.
    resumed = cli(*grid, "--store", "local.sqlite", "--executor", "ray", "--cpus-per-cell", threads, cwd=tmp_path)
    assert resumed.returncode == 0
    assert "4 of 4 cells already done" in resumed.stderr
    # On another number of threads it is another cell (issue 26: one key, and merge hid one of the two).
    if threads != "1":
        one = cli("bench", "-t", "baseline", "-d", SMALL, *EPOCHS, "--device", "cpu", "--store", "local.sqlite",
                  "--executor", "ray", "--cpus-per-cell", "1", cwd=tmp_path)
        assert one.returncode == 0 and "already done" not in one.stderr
        [new] = [r for key, r in _done(tmp_path / "local.sqlite").items() if key not in here]
        assert new["config"]["device"]["numerics"]["threads"] == 1 and "(1 threads)" in new["config"]["device"]["name"]


def test_concurrent_cells_are_placed_on_different_gpus_and_record_them(tmp_path, cli):
    # Cells of 4 s: long enough to overlap even when one waits for a worker process (the module warmed two).
    result = cli("bench", "-t", "baseline", "-d", SMALL, "--seeds", "2", "--epochs", "1000", "--time-budget", "4s",
                 "--precision", "fp32", "--no-channels-last", "--device", "cpu", "--executor", "ray",
                 "--gpus-per-cell", "1", "--cpus-per-cell", "1", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = (r["stats"]["placement"] for r in _done(tmp_path / "r.sqlite").values())
    # They trained at the same time, each holding one of the two GPUs Ray was told of.
    assert first["started"] < second["ended"] and second["started"] < first["ended"]
    assert {tuple(first["gpu_ids"]), tuple(second["gpu_ids"])} == {("0",), ("1",)}
    assert first["gpus"] == second["gpus"] == 1
    assert first["device"] == second["device"] == "cpu"  # --device cpu: placed on a GPU, trained on the CPU


def test_a_shared_gpu_is_written_into_the_conditions_line(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", SMALL, *EPOCHS, "--device", "cpu", "--executor", "ray",
                 "--gpus-per-cell", "0.5", "--cpus-per-cell", "1", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("GPUs shared: 0.5 GPU per cell (--gpus-per-cell), so images/s and times are not comparable with "
            "whole-GPU rows") in result.stdout
    report = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    assert "GPUs shared: 0.5 GPU per cell" in report.stdout


def test_placement_that_the_cluster_cannot_satisfy_is_a_usage_error(tmp_path, cli):
    base = ("bench", "-t", "baseline", "-d", SMALL, *EPOCHS, "--executor", "ray", "--store", "r.sqlite")
    too_many = cli(*base, "--device", "cpu", "--cpus-per-cell", "64", cwd=tmp_path)
    assert too_many.returncode == 2
    assert ("Error: --cpus-per-cell 64: no node of the Ray cluster has that many CPUs (the largest has 2)"
            in too_many.stderr)
    pinned = cli(*base, "--device", "cuda:1", cwd=tmp_path)
    assert pinned.returncode == 2
    assert "--device cuda:1: with --executor ray, Ray chooses each cell's GPU" in pinned.stderr
    assert not (tmp_path / "r.sqlite").exists()
    assert "Traceback" not in too_many.stderr + pinned.stderr


THIRD_PARTY = '''
from aeframe import Technique, hookimpl


class Widened(Technique):
    name, title, base = "widened", "Widened", "baseline"
    description = "the Baseline under another name"

    def wrap_model(self, model, ctx):
        return model


@hookimpl
def register_techniques(register):
    register(Widened())
'''


@pytest.fixture
def driver_only(tmp_path, monkeypatch):
    """A technique installed where the driver runs, but not on the cluster's workers."""
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-widened", "widened_technique", THIRD_PARTY)


def test_a_plugin_missing_on_a_worker_fails_its_cells_naming_the_plugin_and_the_node(tmp_path, cli, driver_only):
    result = cli("bench", "-t", "widened", "-t", "baseline", "-d", SMALL, *EPOCHS, "--device", "cpu",
                 "--executor", "ray", "--cpus-per-cell", "1", "--store", "r.sqlite", cwd=tmp_path, registry=driver_only)
    assert result.returncode == 1
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        rows = dict(db.execute("SELECT label, status FROM cells"))
        error = db.execute("SELECT error FROM cells WHERE label = 'Widened'").fetchone()[0]
    assert rows == {"Widened": "failed", "Baseline": "done"}
    assert error.startswith("technique 'widened' (plugin 'widened' (aeframe-widened 0.1) on the driver) is not "
                            "available on node ")
    assert error.endswith(": no installed plugin registers the technique 'widened'; install the same plugins on "
                          "every node (docs/distributed.md)")
    assert "failed: Widened on shapes (seed 0): technique 'widened' (plugin" in result.stderr
    assert "Traceback" not in result.stderr
