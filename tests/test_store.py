"""The results store: a real SQLite file that survives kills and refuses files that are not ours."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aeframe.errors import StoreError
from aeframe.cells.record import CellConfig, CellRecord
from aeframe.store.sqlite_store import FORMAT_MARKER, SCHEMA_VERSION, Store


def make_record(key: str = "k1", status: str = "done", finished_at: str = "2024-05-01T10:00:00", **kw) -> CellRecord:
    config = CellConfig.from_json({
        "label": kw.pop("label", "Pixel Shuffle"),
        "techniques": [{"name": "pixel_shuffle", "params": {"icnr": True}, "version": "1"}],
        "dataset": {"name": kw.pop("dataset", "mnist"), "title": "MNIST", "params": {}},
        "seed": kw.pop("seed", 0),
        "budget": {"epochs": 15, "seconds": None},
        "protocol": {"batch_size": 64, "phases": [{"name": "run 1", "fraction": 1.0, "max_lr": [0.001],
                                                   "image_size": None}]},
        "device": {"type": "cpu", "name": "Test CPU"},
        "versions": {"aeframe": "0.1.0", "torch": "2.4.1", "torchvision": "0.19.1", "python": "3.11.7"},
    }, status)
    defaults = {
        "metrics": {"mse": 0.00123, "psnr": 29.1},
        "stats": {"train_seconds": 12.5, "eval_seconds": 0.75, "epochs": 2.5, "steps": 40,
                  "images_per_second": 1234.5, "params": 98765},
        "curve": [{"epoch": 1, "step": 20, "train_loss": 0.02, "test_mse": 0.01, "seconds": 5.0}],
    }
    defaults.update(kw)
    return CellRecord(key=key, config=config, status=status, started_at="2024-05-01T09:59:00",
                      finished_at=finished_at, **defaults)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``directory`` with its bytes and mtime, to prove nothing was touched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_round_trip_keeps_every_field(tmp_path):
    record = make_record(error=None)
    with Store(tmp_path / "results.sqlite") as store:
        store.save(record)
        assert store.find_done("k1") == record
        assert store.records() == [record]
        assert store.find_done("other") is None


def test_schema_has_marker_version_and_queryable_columns(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        store.save(make_record(seed=3))
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT name, value FROM meta")) == {
        "format": FORMAT_MARKER, "schema_version": str(SCHEMA_VERSION)}
    assert conn.execute("SELECT key, status, label, dataset, seed FROM cells").fetchall() == [
        ("k1", "done", "Pixel Shuffle", "mnist", 3)]
    assert conn.execute("SELECT json_extract(metrics, '$.mse') FROM cells").fetchone() == (0.00123,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_save_appends_an_attempt_and_find_done_takes_the_latest_done_one(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save(make_record(status="failed", error="RuntimeError: boom", metrics={}))
        assert store.find_done("k1") is None
        store.save(make_record(metrics={"mse": 0.5}, finished_at="2024-05-01T11:00:00"))
        store.save(make_record(metrics={"mse": 0.4}, finished_at="2024-05-01T12:00:00"))
        store.save(make_record(status="failed", error="RuntimeError: again", metrics={},
                               finished_at="2024-05-01T13:00:00"))
        assert [(r.status, r.metrics) for r in store.records()] == [
            ("failed", {}), ("done", {"mse": 0.5}), ("done", {"mse": 0.4}), ("failed", {})]
        assert store.find_done("k1").metrics == {"mse": 0.4}
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    # The `cells` view shows each key's attempt that counts: its latest done one.
    assert conn.execute("SELECT key, status, json_extract(metrics, '$.mse') FROM cells").fetchall() == [
        ("k1", "done", 0.4)]
    conn.close()


@pytest.mark.parametrize("status", ["failed", "diverged", "skipped"])
def test_find_done_ignores_records_that_are_not_done(tmp_path, status):
    with Store(tmp_path / "r.sqlite") as store:
        store.save(make_record(status=status, error="why"))
        assert store.find_done("k1") is None
        assert [r.status for r in store.records()] == [status]


def test_records_in_order_of_finished_at(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.save(make_record("late", finished_at="2024-05-01T12:00:00"))
        store.save(make_record("early", finished_at="2024-05-01T08:00:00"))
        store.save(make_record("middle", finished_at="2024-05-01T10:00:00"))
        assert [r.key for r in store.records()] == ["early", "middle", "late"]


def test_reopening_keeps_records_and_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "results.sqlite"
    with Store(path) as store:
        store.save(make_record("k1"))
    with Store(path) as store:
        store.save(make_record("k2", finished_at="2024-05-01T11:00:00"))
    with Store(path, write=False) as store:
        assert [r.key for r in store.records()] == ["k1", "k2"]


def test_an_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "results.sqlite"
    path.touch()
    with Store(path) as store:
        store.save(make_record())
    with Store(path, write=False) as store:
        assert len(store.records()) == 1


def test_a_text_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("my notes\n")
    before = snapshot(tmp_path)
    for write in (True, False):
        with pytest.raises(StoreError) as e:
            Store(path, write=write)
        assert str(e.value) == (
            f"{path} is not an aeframe results store (not an SQLite file); pass --store with another file")
    assert snapshot(tmp_path) == before


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "results.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.commit()
    conn.close()
    before = snapshot(tmp_path)
    for write in (True, False):
        with pytest.raises(StoreError) as e:
            Store(path, write=write)
        assert str(e.value) == (
            f"{path} is not an aeframe results store (no aeframe marker); pass --store with another file")
    assert snapshot(tmp_path) == before  # also: no lock file, no -wal/-shm left next to it


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '3' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    for write in (True, False):
        with pytest.raises(StoreError) as e:
            Store(path, write=write)
        assert str(e.value) == (
            f"{path} was written by a newer aeframe (results schema 3, this aeframe reads up to 2); "
            "upgrade aeframe to use it")


def test_a_second_writer_is_refused_while_a_reader_is_welcome(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path) as first:
        first.save(make_record())
        holder = json.loads((tmp_path / "results.sqlite.lock").read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(StoreError) as e:
            Store(path)
        assert str(e.value) == (
            f"{path} is in use by aeframe pid {os.getpid()} on host {socket.gethostname()} since {holder['since']}; "
            "wait for it or pass --store with another file")
        with Store(path, write=False) as reader:
            assert [r.key for r in reader.records()] == ["k1"]
    with Store(path) as again:  # closing released the lock
        assert again.find_done("k1") is not None


def test_reading_a_missing_store_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "results.sqlite"
    with pytest.raises(StoreError) as e:
        Store(path, write=False)
    assert str(e.value) == f"no results store at {path}; run aeframe bench first or pass --store"
    assert list(tmp_path.iterdir()) == []


def test_a_reader_cannot_save(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).close()
    with Store(path, write=False) as reader, pytest.raises(StoreError, match="read-only"):
        reader.save(make_record())


def test_non_finite_numbers_are_stored_as_null_so_every_json_column_is_valid_json(tmp_path):
    # Python's json wrote NaN and Infinity, which SQLite's json_valid refuses and json_extract fails on.
    nan, inf = float("nan"), float("inf")
    record = make_record(status="diverged", error="evaluation gave non-finite mse: nan",
                         metrics={"mse": nan, "psnr": inf, "mae": 0.5},
                         stats={"train_seconds": 1.5, "images_per_second": inf, "cpu_share": nan},
                         curve=[{"epoch": 1, "train_loss": 0.02, "test_mse": nan, "terms": {"kl": -inf}}])
    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        store.save(record)
    with sqlite3.connect(path) as db:
        for table in ("cells", "attempts"):
            assert db.execute(f"SELECT count(*) FROM {table} WHERE json_valid(config) = 0 OR json_valid(metrics) = 0 "
                              "OR json_valid(stats) = 0 OR json_valid(curve) = 0").fetchone() == (0,), table
        assert db.execute("SELECT json_type(metrics, '$.mse'), json_extract(metrics, '$.mae'), "
                          "json_extract(curve, '$[0].terms.kl') FROM cells").fetchone() == ("null", 0.5, None)
    with Store(path, write=False) as reader:
        [back] = reader.records()
    assert back.status == "diverged" and back.metrics == {"mse": None, "psnr": None, "mae": 0.5}
    assert back.curve[0]["test_mse"] is None and back.stats.train_seconds == 1.5


CHILD = textwrap.dedent(
    """
    import sys, time
    from aeframe.cells.record import CellConfig, CellRecord, DatasetRef
    from aeframe.store.sqlite_store import Store

    store = Store(sys.argv[1])
    store.save(CellRecord(key="survivor", config=CellConfig(label="Baseline", dataset=DatasetRef("mnist")),
                          status="done", metrics={"mse": 0.25}, finished_at="2024-05-01T10:00:00"))
    print("saved", flush=True)
    time.sleep(120)
    """
)


def test_a_killed_run_keeps_what_it_committed(tmp_path):
    path = tmp_path / "results.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "saved\n"
        with pytest.raises(StoreError, match=rf"in use by aeframe pid {child.pid} on host "):
            Store(path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Store(path, write=False) as reader:
        assert [(r.key, r.metrics) for r in reader.records()] == [("survivor", {"mse": 0.25})]
    with Store(path) as writer:  # the kernel dropped the dead run's lock
        assert writer.find_done("survivor").metrics == {"mse": 0.25}
