"""Executors as plugins: the hook, `aeframe list executors`, options an executor does not take, --shard,
and a third-party executor written from docs/plugins.md running a real bench."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from conftest import TINY_SHAPES, installed_registry

ROOT = Path(__file__).resolve().parent.parent
ONE_EPOCH = ("--epochs", "1", "--precision", "fp32", "--no-channels-last", "--device", "cpu")


def test_hook_register_executors(registry):
    assert set(registry.executors) == {"local", "ray"}
    assert registry.plugin_of("executor", "ray").name == registry.plugin_of("executor", "local").name == "executors"
    assert registry.executors["ray"].accepts == ("address", "gpus_per_cell", "cpus_per_cell", "retries")


def test_list_executors_says_what_each_does_and_whether_it_can_run_here(tmp_path, cli):
    listed = cli("list", "executors", "--json", cwd=tmp_path)
    assert listed.returncode == 0
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["local"]["available"] and rows["local"]["options"] == ["--cells-per-device"]
    assert rows["ray"]["available"]  # the README's test command installs aeframe[ray]
    assert rows["ray"]["options"] == ["--ray-address", "--gpus-per-cell", "--cpus-per-cell", "--retries"]
    text = cli("list", "executors", cwd=tmp_path).stdout
    assert text.startswith("local: Local: every cell one after another in this process, on --device; with "
                           "--cells-per-device N, N at once in worker processes\n    available; options --cells-per-device\n")


@pytest.mark.parametrize("option, value", [("--gpus-per-cell", "1"), ("--cpus-per-cell", "2"),
                                           ("--ray-address", "10.0.0.1:6379"), ("--retries", "0")])
def test_a_placement_option_the_executor_does_not_take_is_refused(tmp_path, cli, option, value):
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, option, value, "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: {option} does not apply to --executor local; leave it out, or use an executor that places cells "
        "(`aeframe list executors`)")
    assert not (tmp_path / "r.sqlite").exists()


def test_an_unknown_executor_names_the_close_ones(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--executor", "rya", cwd=tmp_path)
    assert result.returncode == 2
    assert "Error: unknown executor 'rya'; did you mean ray? `aeframe list executors` shows them all" in result.stderr


def _keys(store: Path) -> set[str]:
    with sqlite3.connect(store) as db:
        return {key for (key,) in db.execute("SELECT key FROM cells WHERE status = 'done'")}


def test_shards_split_the_planned_cells_into_disjoint_slices_that_make_the_whole(tmp_path, cli):
    grid = ("bench", "-t", "baseline", "-t", "pixel-shuffle", "-d", TINY_SHAPES, "--seeds", "2", *ONE_EPOCH)
    first = cli(*grid, "--shard", "1/3", "--store", "one.sqlite", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "shard 1/3: 2 of the 4 planned cells" in first.stderr
    second = cli(*grid, "--shard", "2/3", "--store", "two.sqlite", cwd=tmp_path)
    third = cli(*grid, "--shard", "3/3", "--store", "three.sqlite", cwd=tmp_path)
    assert second.returncode == third.returncode == 0
    one, two, three = (_keys(tmp_path / f"{n}.sqlite") for n in ("one", "two", "three"))
    assert (len(one), len(two), len(three)) == (2, 1, 1)  # every third cell from the K-th of the plan
    assert not (one & two or one & three or two & three)
    # Together they are the whole grid: a run of all of it into the first store only trains what is left.
    whole = cli(*grid, "--store", "one.sqlite", cwd=tmp_path)
    assert "2 of 4 cells already done in one.sqlite" in whole.stderr
    assert _keys(tmp_path / "one.sqlite") == one | two | three


@pytest.mark.parametrize("value, why", [("3/2", "K must be between 1 and N"), ("0/2", "K must be between 1 and N"),
                                        ("two/4", "is not K/N")])
def test_a_malformed_shard_is_a_usage_error(tmp_path, cli, value, why):
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--shard", value, cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(rf"Invalid value for '--shard': '{re.escape(value)}'.*{why}", result.stderr)


def _example_executor() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    return next(b for b in blocks if "def register_executors" in b)


@pytest.fixture
def docs_executor(tmp_path, monkeypatch):
    """The built-ins and the executor docs/plugins.md shows, installed as pip would leave it; its spawned
    worker processes find it too."""
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))  # where installed_registry installs it
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-processes", "process_executor", _example_executor())


def test_the_executor_written_from_the_docs_trains_a_grid_in_worker_processes(tmp_path, cli, docs_executor):
    listed = cli("list", "executors", cwd=tmp_path, registry=docs_executor)
    assert "processes: Process pool: the cells in two worker processes" in listed.stdout

    grid = ("bench", "-t", "baseline", "-t", "pixel-shuffle", "-d", TINY_SHAPES, *ONE_EPOCH)
    result = cli(*grid, "--executor", "processes", "--store", "p.sqlite", cwd=tmp_path, registry=docs_executor)
    assert result.returncode == 0, result.stderr
    assert "training 2 cells on " in result.stderr and "(2 worker processes, 1 thread each)" in result.stderr
    with sqlite3.connect(tmp_path / "p.sqlite") as db:
        rows = db.execute("SELECT label, status, config FROM cells").fetchall()
    assert sorted((label, status) for label, status, _ in rows) == [("Baseline", "done"), ("Pixel Shuffle", "done")]
    # Each record names the device it trained on: a worker's single thread.
    assert all(json.loads(config)["device"]["name"].endswith("(1 threads)") for _, _, config in rows)
    # The same cells as the local executor plans: its store takes them as done.
    local = cli(*grid, "--store", "p.sqlite", cwd=tmp_path, registry=docs_executor)
    assert "2 of 2 cells already done in p.sqlite" in local.stderr


# An executor written against the calls of aeframe 0.1.x, before aeframe.executors: orders made from the
# cells, shipped data, run_order and failed_order, all imported from aeframe. It trains in this process.
OLD_STYLE = """
from aeframe import (Executor, ExecutorSession, failed_order, hookimpl, order_of, prepare_metrics, run_order,
                     shippable, train_cells, unshipped)


class OldSession(ExecutorSession):
    device_type = "cpu"

    def __init__(self, settings):
        self.dirs = (settings.data_dir, settings.cache_dir)

    def on_cell_device(self, fn):
        import torch

        return fn(torch.device("cpu"))

    def run(self, groups, work):
        import torch

        cpu = torch.device("cpu")
        for group in groups:
            arrays = shippable(group.data)
            orders = [order_of(cell, work.metrics) for cell in group.cells]
            prepared = prepare_metrics(orders[0], unshipped(arrays), cpu, *self.dirs)
            for order in orders[:-1]:
                yield run_order(order, unshipped(arrays), prepared, cpu, *self.dirs)
            yield failed_order(orders[-1], "this executor gives up on the last cell")
        yield from train_cells([], work, cpu)


class Old(Executor):
    name, title, description = "old-style", "Old style", "the executor calls of aeframe 0.1.x"

    def open(self, settings):
        return OldSession(settings)


@hookimpl
def register_executors(register):
    register(Old())
"""


@pytest.fixture
def old_style(tmp_path, monkeypatch):
    """The built-ins and OLD_STYLE installed; importing it warns that its names moved, naming where to read why."""
    installing = installed_registry(tmp_path, monkeypatch, "aeframe-old-style", "old_style_executor", OLD_STYLE)
    with pytest.warns(DeprecationWarning, match="docs/plugins.md, 'Plugins written for aeframe 0.1'"):
        registry = next(installing)
    yield registry
    next(installing, None)


def test_an_executor_written_against_the_calls_before_0_2_still_trains(tmp_path, cli, old_style):
    grid = ("bench", "-t", "baseline", "-d", TINY_SHAPES, "--seeds", "2", *ONE_EPOCH)
    result = cli(*grid, "--executor", "old-style", "--store", "o.sqlite", cwd=tmp_path, registry=old_style)
    assert result.returncode == 1  # the cell it gave up on
    assert "failed: Baseline on shapes (seed 1): this executor gives up on the last cell" in result.stderr
    with sqlite3.connect(tmp_path / "o.sqlite") as db:
        rows = dict(db.execute("SELECT seed, status FROM cells"))
    assert rows == {0: "done", 1: "failed"}
    # The cell it trained is the local executor's: the same key, taken from the store as done.
    local = cli(*grid, "--store", "o.sqlite", cwd=tmp_path, registry=old_style)
    assert "1 of 2 cells already done in o.sqlite" in local.stderr
