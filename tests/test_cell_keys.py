"""What goes into a cell's key (issue 26, cases 1 and 2): everything that changes its numbers, and
nothing a rerun of the same command on the same machine could decide differently."""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from aeframe.execution.environment import device_info
from aeframe.speed import precision_probe
from aeframe.speed.cache import SpeedCache
from aeframe.speed.precision_probe import Measurement, precision_key

SMALL = "shapes[train=256,test=64]"
CPU = torch.device("cpu")


def _rows(store) -> list[tuple[str, dict]]:
    with sqlite3.connect(store) as db:
        return [(key, json.loads(config)) for key, config in db.execute("SELECT key, config FROM cells ORDER BY rowid")]


def _cache(tmp_path, name: str):
    """A cache directory of its own for the speed choices, sharing the test run's reference classifiers
    (training one takes a minute)."""
    shared = Path(os.environ["AEFRAME_CACHE"]) / "classifier"
    shared.mkdir(parents=True, exist_ok=True)
    own = tmp_path / name
    own.mkdir()
    (own / "classifier").symlink_to(shared, target_is_directory=True)
    return own


def _bench(cli, tmp_path, *args: str, cache=None):
    env = {"AEFRAME_CACHE": str(cache)} if cache else None
    store = () if "--store" in args else ("--store", "r.sqlite")
    ran = cli("bench", "-t", "baseline", "-d", SMALL, "--epochs", "1", *store, *args, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    return ran


def _favouring(precision: str) -> dict[str, Measurement]:
    """Probe measurements under which auto picks ``precision``."""
    fast, slow = Measurement(2000.0, 0.0, 0.0, True), Measurement(1000.0, 0.0, 0.0, True)
    return {"fp32": fast if precision == "fp32" else slow, "bf16": fast if precision == "bf16" else slow}


# --- case 1: --precision auto, decided again ----------------------------------------------------------

def test_the_same_command_resumes_when_auto_measured_on_a_busy_machine_would_now_choose_otherwise(
        tmp_path, cli, monkeypatch):
    # Busy (`yes>/dev/null &` twice): the measurement is not cached and picked fp32; idle, it picks bf16.
    monkeypatch.setattr(precision_probe, "candidates", lambda device: ["fp32", "bf16"])
    monkeypatch.setattr(precision_probe, "measure", lambda device, names: _favouring("fp32"))
    monkeypatch.setattr(precision_probe, "busy_share", lambda share: True)
    cache = _cache(tmp_path, "cache")
    first = _bench(cli, tmp_path, cache=cache)
    assert "the machine was busy while the precision was measured" in first.stderr
    monkeypatch.setattr(precision_probe, "measure", lambda device, names: _favouring("bf16"))
    monkeypatch.setattr(precision_probe, "busy_share", lambda share: False)
    again = _bench(cli, tmp_path, cache=cache)
    assert "1 of 1 cells already done" in again.stderr
    assert "precision fp32 (as the store's cells from an earlier run on this machine" in again.stderr
    [(_, config)] = _rows(tmp_path / "r.sqlite")
    assert (config["precision"], config["precision_from"]) == ("fp32", "measured")
    # The report is one table, not an fp32 one and a bf16 one.
    report = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    assert report.stdout.count("Precision: fp32") == 1 and "bf16" not in report.stdout
    # A new store measures again (and the idle measurement is kept in the cache).
    fresh = cli("bench", "-t", "baseline", "-d", SMALL, "--epochs", "1", "--store", "new.sqlite", cwd=tmp_path,
                env={"AEFRAME_CACHE": str(cache)})
    assert fresh.returncode == 0 and "--precision auto: precision bf16 (measured now" in fresh.stderr


@pytest.mark.parametrize("cached", ["bf16", "garbage"])
def test_the_same_command_resumes_whatever_the_speed_cache_now_says(tmp_path, cli, monkeypatch, cached):
    monkeypatch.setattr(precision_probe, "candidates", lambda device: ["fp32", "bf16"])
    monkeypatch.setattr(precision_probe, "measure", lambda device, names: _favouring("bf16"))
    monkeypatch.setattr(precision_probe, "busy_share", lambda share: False)
    key = precision_key(device_info(CPU)["name"], torch.__version__.split("+")[0])
    first = _cache(tmp_path, "first")
    SpeedCache(first).put(key, {"precision": "fp32", "measurements": {}})
    _bench(cli, tmp_path, cache=first)
    second = _cache(tmp_path, "second")
    if cached == "garbage":
        (second / "speed-choices.json").write_text("{\x00 not json")
    else:
        SpeedCache(second).put(key, {"precision": cached, "measurements": {}})
    again = _bench(cli, tmp_path, cache=second)
    assert "1 of 1 cells already done" in again.stderr
    assert [config["precision"] for _, config in _rows(tmp_path / "r.sqlite")] == ["fp32"]


# --- case 2: the device's numerics -------------------------------------------------------------------

@contextmanager
def _threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _deterministic():
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_cell_on_one_thread_is_another_cell_than_on_two(tmp_path, cli):
    # Seen: a local 2-thread cell and `--executor ray --cpus-per-cell 1` (MSE 0.218737 vs 0.219289)
    # shared key 3622461615a1d7a6; `aeframe merge` called them a disagreement and hid one.
    with _threads(2):
        _bench(cli, tmp_path, "--precision", "fp32", "--store", "two.sqlite")
    with _threads(1):
        _bench(cli, tmp_path, "--precision", "fp32", "--store", "one.sqlite")
    [(two_key, two)], [(one_key, one)] = _rows(tmp_path / "two.sqlite"), _rows(tmp_path / "one.sqlite")
    assert two_key != one_key
    assert two["device"]["numerics"]["threads"] == 2 and one["device"]["numerics"]["threads"] == 1
    assert "(2 threads)" in two["device"]["name"] and "(1 threads)" in one["device"]["name"]
    merged = cli("merge", "all.sqlite", "two.sqlite", "one.sqlite", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert "disagree" not in merged.stderr and "2 cells" in merged.stderr
    # Both are shown, in a table each: they are not comparable (under a time budget least of all).
    report = cli("report", "--store", "all.sqlite", cwd=tmp_path).stdout
    lines = [line for line in report.splitlines() if line.startswith("Budget:")]
    assert len(lines) == 2 and "(2 threads)" in lines[0] and "(1 threads)" in lines[1]
    assert [line for line in report.splitlines() if line.startswith("### ")] == [
        "### Numerics: threads=2", "### Numerics: threads=1"]


def test_deterministic_algorithms_are_in_the_key(tmp_path, cli):
    _bench(cli, tmp_path, "--precision", "fp32")
    with _deterministic():
        again = _bench(cli, tmp_path, "--precision", "fp32")
    assert "already done" not in again.stderr
    (plain_key, plain), (strict_key, strict) = _rows(tmp_path / "r.sqlite")
    assert plain_key != strict_key
    assert (plain["device"]["numerics"]["deterministic"], strict["device"]["numerics"]["deterministic"]) == (False, True)


def test_the_numerics_of_a_cpu_name_its_threads():
    found = device_info(CPU)["numerics"]
    assert found == {"deterministic": torch.are_deterministic_algorithms_enabled(),
                     "float32_matmul": torch.get_float32_matmul_precision(), "threads": torch.get_num_threads()}
