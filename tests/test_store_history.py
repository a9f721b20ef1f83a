"""The store keeps every attempt of a cell: a rerun adds one, and nothing finished is ever lost.

Covers issue 11's fault 3 (a failed ``--rerun`` replaced the ``done`` record by ``failed``) and
the move of aeframe 0.1.0's stores (schema 1, one row per cell) to schema 2 (one row per attempt).
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from aeframe.errors import StoreError
from aeframe.store.sqlite_store import Store
from store_helpers import flaky_registry
from test_store import make_record, snapshot

DATA = Path(__file__).resolve().parent / "data"
SHAPES = "shapes[train=256,test=64]"


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    yield from flaky_registry(tmp_path, monkeypatch)


@pytest.fixture
def old_store(tmp_path) -> Path:
    path = tmp_path / "old" / "store-0.1.0.sqlite"
    path.parent.mkdir()
    shutil.copy(DATA / "store-0.1.0.sqlite", path)
    return path


def _tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))


def test_a_0_1_0_store_read_for_a_report_is_not_modified(old_store):
    before = snapshot(old_store.parent)
    with Store(old_store, write=False) as store:
        assert len(store.records()) == 9
        assert len(store.samples(r.key for r in store.records())) == 6
    assert snapshot(old_store.parent) == before  # no migration, no -wal/-shm, no lock


def test_a_0_1_0_store_opened_by_a_bench_moves_to_schema_2_keeping_every_record(old_store, registry):
    from aeframe.report.render import render

    with Store(old_store, write=False) as store:
        records = store.records()
        samples = store.samples(r.key for r in records)
    with Store(old_store) as store:
        assert store.records() == records
        assert {k: (s.indices, s.originals.tolist()) for k, s in store.samples(r.key for r in records).items()} == {
            k: (s.indices, s.originals.tolist()) for k, s in samples.items()}
    tables = _tables(old_store)
    assert tables["attempts"] == "table" and tables["cells"] == "view" and tables["samples"] == "table"
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == ("2",)
        assert conn.execute("SELECT count(*) FROM attempts").fetchone() == (9,)
        assert conn.execute("SELECT count(*) FROM cells").fetchone() == (9,)
    markdown = render(records, list(registry.metrics.values()))
    assert markdown.rstrip("\n") == (DATA / "report-0.1.0.md").read_text().rstrip("\n")


def test_a_migration_that_fails_leaves_the_old_store_as_it_was(old_store):
    # Someone added a table of their own with the name schema 2 needs: the move cannot complete.
    with sqlite3.connect(old_store) as conn:
        conn.execute("CREATE TABLE attempts (note TEXT)")
    conn.close()
    before = old_store.read_bytes()
    with pytest.raises(StoreError) as e:
        Store(old_store)
    assert str(e.value).startswith(f"cannot update {old_store} (no such column: key)")
    assert old_store.read_bytes() == before  # one transaction: rolled back as a whole
    assert _tables(old_store)["cells"] == "table"
    with Store(old_store, write=False) as store:
        assert len(store.records()) == 9


def test_a_failed_attempt_keeps_the_samples_of_the_done_one(tmp_path):
    import torch

    from aeframe.cells.samples import Samples

    pictures = Samples([0, 1], torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.ones(2, 1, 2, 2, dtype=torch.uint8))
    with Store(tmp_path / "r.sqlite") as store:
        done = make_record()
        done.samples = pictures
        store.save(done)
        store.save(make_record(status="failed", error="RuntimeError: boom", metrics={},
                               finished_at="2024-05-01T11:00:00"))
        assert store.samples(["k1"])["k1"].reconstructions.tolist() == pictures.reconstructions.tolist()
        store.save(make_record(finished_at="2024-05-01T12:00:00"))  # a done attempt without pictures
        assert store.samples(["k1"]) == {}


def test_a_failed_rerun_keeps_the_finished_result_and_the_report_lists_the_failure(tmp_path, cli, flaky):
    args = ("bench", "-t", "flaky", "-d", SHAPES, "--epochs", "1", "--store", "r.sqlite")
    first = cli(*args, cwd=tmp_path, registry=flaky)
    assert first.returncode == 0, first.stderr
    with Store(tmp_path / "r.sqlite", write=False) as store:
        (done,) = store.records()
        assert set(store.samples([done.key])) == {done.key}

    again = cli(*args, "--rerun", cwd=tmp_path, env={"AEFRAME_TEST_FAIL": "1"}, registry=flaky)
    assert again.returncode == 1
    assert "failed: Flaky on shapes (seed 0): RuntimeError: flaky failed on purpose" in again.stderr
    # What the bench prints is what the report will show: the finished result, and the failure after it.
    assert "| Flaky " in again.stdout and "- Flaky: later attempt failed (RuntimeError: flaky failed on purpose)" \
        in again.stdout

    with Store(tmp_path / "r.sqlite", write=False) as store:
        assert [r.status for r in store.records()] == ["done", "failed"]
        assert store.find_done(done.key) == done
        assert set(store.samples([done.key])) == {done.key}

    shown = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"{done.metrics['mse']:.6f}" in shown.stdout
    assert "- Flaky: later attempt failed (RuntimeError: flaky failed on purpose)" in shown.stdout

    as_json = json.loads(cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path).stdout)
    (dataset,) = as_json["datasets"]
    assert dataset["tables"][0]["rows"][0]["metrics"]["mse"]["values"] == [done.metrics["mse"]]
    assert [(e["status"], e["after_done"]) for e in dataset["not_done"]] == [("failed", True)]

    rows = list(csv.DictReader(io.StringIO(cli("report", "--store", "r.sqlite", "--format", "csv",
                                               cwd=tmp_path).stdout)))
    assert [(r["status"], r["in_table"]) for r in rows] == [("done", "true"), ("failed", "false")]

    # Fixed again: a new done attempt, which the tables now use; the failure is history.
    fixed = cli(*args, "--rerun", cwd=tmp_path, registry=flaky)
    assert fixed.returncode == 0, fixed.stderr
    assert "later attempt" not in fixed.stdout
    with Store(tmp_path / "r.sqlite", write=False) as store:
        assert [r.status for r in store.records()] == ["done", "failed", "done"]
    rows = list(csv.DictReader(io.StringIO(cli("report", "--store", "r.sqlite", "--format", "csv",
                                               cwd=tmp_path).stdout)))
    assert [r["in_table"] for r in rows] == ["false", "false", "true"]
