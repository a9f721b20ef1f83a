"""``aeframe merge OUT IN...``: stores made on separate machines become one store (issue 13).

The stores are real: two tiny benches run one after the other, a "laptop" that trained the
Baseline and a "GPU box" that trained Pixel Shuffle and then the Baseline again (the same cell,
finished later). Records built by hand cover what a bench cannot be made to do on demand.
"""
from __future__ import annotations

import csv
import io
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from aeframe.store.sqlite_store import Store
from test_store import make_record, snapshot

DATA = Path(__file__).resolve().parent / "data"
SHAPES = "shapes[train=256,test=64]"


@pytest.fixture(scope="module")
def benched(tmp_path_factory) -> Path:
    """A folder with laptop.sqlite (Baseline) and gpu.sqlite (Pixel Shuffle, then Baseline again)."""
    from click.testing import CliRunner

    from aeframe.cli import cli as command

    root = tmp_path_factory.mktemp("benched")
    for store, techniques in (("laptop.sqlite", ["baseline"]), ("gpu.sqlite", ["pixel-shuffle", "baseline"])):
        args = [arg for name in techniques for arg in ("-t", name)]
        # Precision and layout named: nothing is measured, so the two runs' Baselines are one cell.
        ran = CliRunner().invoke(command, ["bench", *args, "-d", SHAPES, "--epochs", "1", "--precision", "fp32",
                                           "--no-channels-last", "--store", str(root / store)])
        assert ran.exit_code == 0, (ran.stderr, ran.exception)
        time.sleep(1)  # finished_at has whole seconds: the GPU box's Baseline finishes in a later one
    laptop, gpu = _records(root / "laptop.sqlite"), _records(root / "gpu.sqlite")
    assert [r.config.label for r in laptop + gpu] == ["Baseline", "Pixel Shuffle", "Baseline"]
    assert laptop[0].key == gpu[1].key, (laptop[0].config, gpu[1].config)
    assert laptop[0].finished_at < gpu[1].finished_at, (laptop[0].finished_at, gpu[1].finished_at)
    return root


@pytest.fixture
def stores(benched, tmp_path) -> Path:
    for name in ("laptop.sqlite", "gpu.sqlite"):
        shutil.copy(benched / name, tmp_path / name)
    return tmp_path


def _records(path: Path):
    with Store(path, write=False) as store:
        return store.records()


def _by_cell(path: Path):
    return sorted(_records(path), key=lambda r: (r.key, r.finished_at))


def _samples(path: Path) -> dict[str, tuple]:
    with Store(path, write=False) as store:
        return store.sample_rows(r.key for r in store.records())


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _edit(path: Path, sql: str, *params) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def _lines(stderr: str) -> list[str]:
    return [line.removeprefix("aeframe: ") for line in stderr.splitlines()]


def test_disjoint_cells_of_two_machines_all_end_up_in_one_store_that_reports(stores, cli):
    # The laptop's Baseline left out of the GPU box's store: each store has a cell the other lacks.
    _edit(stores / "gpu.sqlite", "DELETE FROM attempts WHERE label = 'Baseline'")
    laptop, gpu = _records(stores / "laptop.sqlite"), _records(stores / "gpu.sqlite")
    assert [r.config.label for r in laptop + gpu] == ["Baseline", "Pixel Shuffle"]

    ran = cli("merge", "merged.sqlite", "laptop.sqlite", "gpu.sqlite", cwd=stores)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert _lines(ran.stderr) == [
        "laptop.sqlite: 1 attempt, 1 new, 0 already in merged.sqlite",
        "gpu.sqlite: 1 attempt, 1 new, 0 already in merged.sqlite",
        "merged.sqlite now holds 2 attempts of 2 cells (2 done)",
    ]
    merged = _records(stores / "merged.sqlite")
    assert sorted(merged, key=lambda r: r.key) == sorted(laptop + gpu, key=lambda r: r.key)
    assert set(_samples(stores / "merged.sqlite")) == {r.key for r in merged}

    shown = cli("report", "--store", "merged.sqlite", cwd=stores)
    assert shown.returncode == 0, shown.stderr
    for record in merged:
        assert f"| {record.config.label} " in shown.stdout
        assert f"{record.metrics['mse']:.6f}" in shown.stdout

    # A bench on the merged store takes both cells from it, as from any store.
    again = cli("bench", "-t", "baseline", "-t", "pixel-shuffle", "-d", SHAPES, "--epochs", "1", "--precision", "fp32",
                "--no-channels-last", "--store", "merged.sqlite", cwd=stores)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 cells already done" in again.stderr
    assert len(_records(stores / "merged.sqlite")) == 2


@pytest.mark.parametrize("order", [("laptop.sqlite", "gpu.sqlite"), ("gpu.sqlite", "laptop.sqlite")], ids="+".join)
def test_the_same_cell_in_two_stores_counts_as_the_later_finished_attempt_in_any_order(stores, cli, order):
    # The two Baselines compute the same numbers here: tell them apart by what was stored.
    _edit(stores / "laptop.sqlite", "UPDATE attempts SET metrics = json_set(metrics, '$.mse', 0.5)")
    (early,) = _records(stores / "laptop.sqlite")
    late = _records(stores / "gpu.sqlite")[1]

    ran = cli("merge", "merged.sqlite", *order, cwd=stores)
    assert ran.returncode == 0, ran.stderr
    assert (f"stores disagree on Baseline on shapes, seed 0 (cell {late.key}): done in {order[0]} finished "
            f"{(early if order[0] == 'laptop.sqlite' else late).finished_at}, {order[1]} finished "
            f"{(late if order[0] == 'laptop.sqlite' else early).finished_at}; the attempt finished {late.finished_at} "
            "(gpu.sqlite) counts, the others are history") in _lines(ran.stderr)

    merged = stores / "merged.sqlite"
    history = _records(merged)
    assert [r for r in history if r.key == late.key] == [early, late]  # both kept, oldest first
    with Store(merged, write=False) as store:
        assert store.find_done(late.key) == late  # what a bench resumes from
    assert _rows(merged, f"SELECT finished_at FROM cells WHERE key = '{late.key}'") == [(late.finished_at,)]

    rows = list(csv.DictReader(io.StringIO(cli("report", "--store", "merged.sqlite", "--format", "csv",
                                               cwd=stores).stdout)))
    baseline = [(r["mse"], r["in_table"]) for r in rows if r["label"] == "Baseline"]
    assert baseline == [("0.5", "false"), (repr(late.metrics["mse"]), "true")]


def test_an_older_attempt_merged_into_a_store_that_holds_a_later_one_does_not_take_its_place(stores, cli):
    assert cli("merge", "merged.sqlite", "gpu.sqlite", cwd=stores).returncode == 0
    ran = cli("merge", "merged.sqlite", "laptop.sqlite", cwd=stores)
    assert ran.returncode == 0, ran.stderr
    assert "laptop.sqlite: 1 attempt, 1 new, 0 already in merged.sqlite" in _lines(ran.stderr)
    late = _records(stores / "gpu.sqlite")[1]
    with Store(stores / "merged.sqlite", write=False) as store:
        assert store.find_done(late.key) == late
    # Each cell's row ids follow finished_at, the order the `cells` view and the report go by.
    assert _rows(stores / "merged.sqlite", "SELECT finished_at FROM attempts WHERE label = 'Baseline' ORDER BY id") == [
        (r.finished_at,) for r in _records(stores / "merged.sqlite") if r.config.label == "Baseline"]


def test_the_sample_images_follow_the_attempt_that_counts(stores, cli):
    # The laptop's pictures made different, so that we can tell whose pictures the merged store keeps.
    _edit(stores / "laptop.sqlite", "UPDATE samples SET reconstructions = zeroblob(length(reconstructions))")
    key = _records(stores / "laptop.sqlite")[0].key
    laptop, gpu = _samples(stores / "laptop.sqlite")[key], _samples(stores / "gpu.sqlite")[key]
    assert laptop != gpu

    for out, order in (("a.sqlite", ("laptop.sqlite", "gpu.sqlite")), ("b.sqlite", ("gpu.sqlite", "laptop.sqlite"))):
        assert cli("merge", out, *order, cwd=stores).returncode == 0
        assert _samples(stores / out)[key] == gpu
    # In two steps, the later one first: OUT's pictures stay.
    assert cli("merge", "c.sqlite", "gpu.sqlite", cwd=stores).returncode == 0
    assert cli("merge", "c.sqlite", "laptop.sqlite", cwd=stores).returncode == 0
    assert _samples(stores / "c.sqlite")[key] == gpu
    # The earlier one first: the later one's pictures replace them.
    assert cli("merge", "d.sqlite", "laptop.sqlite", cwd=stores).returncode == 0
    assert _samples(stores / "d.sqlite")[key] == laptop
    assert cli("merge", "d.sqlite", "gpu.sqlite", cwd=stores).returncode == 0
    assert _samples(stores / "d.sqlite")[key] == gpu


def test_a_done_attempt_without_pictures_that_counts_takes_the_older_pictures_away(tmp_path, cli):
    import torch

    from aeframe.cells.samples import Samples

    with Store(tmp_path / "old.sqlite") as store:
        done = make_record()
        done.samples = Samples([0], torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.ones(1, 1, 2, 2, dtype=torch.uint8))
        store.save(done)
    with Store(tmp_path / "new.sqlite") as store:
        store.save(make_record(finished_at="2024-05-02T10:00:00"))
    assert cli("merge", "merged.sqlite", "old.sqlite", cwd=tmp_path).returncode == 0
    assert set(_samples(tmp_path / "merged.sqlite")) == {"k1"}
    assert cli("merge", "merged.sqlite", "new.sqlite", cwd=tmp_path).returncode == 0
    assert _samples(tmp_path / "merged.sqlite") == {}  # they were the older attempt's, which no longer counts


def test_merging_again_adds_nothing(stores, cli):
    args = ("merge", "merged.sqlite", "laptop.sqlite", "gpu.sqlite")
    assert cli(*args, cwd=stores).returncode == 0
    merged = stores / "merged.sqlite"
    before = _rows(merged, "SELECT * FROM attempts ORDER BY id"), _rows(merged, "SELECT * FROM samples ORDER BY key")

    again = cli(*args, cwd=stores)
    assert again.returncode == 0, again.stderr
    lines = _lines(again.stderr)
    assert lines[:2] == ["laptop.sqlite: 1 attempt, 0 new, 1 already in merged.sqlite",
                         "gpu.sqlite: 2 attempts, 0 new, 2 already in merged.sqlite"]
    assert lines[-1] == "merged.sqlite now holds 3 attempts of 2 cells (2 done)"
    # OUT given as an input too, and a merged store merged into another with one of its sources.
    assert cli("merge", "merged.sqlite", "merged.sqlite", "gpu.sqlite", cwd=stores).stderr.startswith(
        "aeframe: merged.sqlite is merged.sqlite itself: its attempts are there already\n")
    assert (_rows(merged, "SELECT * FROM attempts ORDER BY id"), _rows(merged, "SELECT * FROM samples ORDER BY key")) \
        == before
    other = cli("merge", "other.sqlite", "gpu.sqlite", "merged.sqlite", cwd=stores)
    assert "merged.sqlite: 3 attempts, 1 new, 2 already in other.sqlite" in _lines(other.stderr)
    # Attempts of different cells that finished in the same second may be listed in either order.
    assert _by_cell(stores / "other.sqlite") == _by_cell(merged)


def test_a_store_of_a_newer_aeframe_is_refused_and_nothing_is_written(stores, cli):
    shutil.copy(stores / "gpu.sqlite", stores / "newer.sqlite")
    _edit(stores / "newer.sqlite", "UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    ran = cli("merge", "merged.sqlite", "laptop.sqlite", "newer.sqlite", cwd=stores)
    assert ran.returncode == 1
    assert ran.stderr == ("Error: newer.sqlite was written by a newer aeframe (results schema 99, this aeframe "
                          "reads up to 2); upgrade aeframe to use it\n")
    assert not (stores / "merged.sqlite").exists() and not (stores / "merged.sqlite.lock").exists()

    # An existing OUT is left exactly as it was.
    assert cli("merge", "merged.sqlite", "laptop.sqlite", cwd=stores).returncode == 0
    before = snapshot(stores)
    ran = cli("merge", "merged.sqlite", "gpu.sqlite", "newer.sqlite", cwd=stores)
    assert ran.returncode == 1 and ran.stderr.startswith("Error: newer.sqlite was written by a newer aeframe")
    assert snapshot(stores) == before


def test_a_file_that_is_not_a_store_is_refused_by_name(stores, cli):
    (stores / "notes.txt").write_text("not a store\n")
    ran = cli("merge", "merged.sqlite", "laptop.sqlite", "notes.txt", cwd=stores)
    assert ran.returncode == 1
    assert ran.stderr == "Error: notes.txt is not an aeframe results store (not an SQLite file); give another file\n"
    assert not (stores / "merged.sqlite").exists()
    # OUT must be a store too, and is left alone when it is not one.
    ran = cli("merge", "notes.txt", "laptop.sqlite", cwd=stores)
    assert ran.returncode == 1 and ran.stderr.startswith("Error: notes.txt is not an aeframe results store")
    assert (stores / "notes.txt").read_text() == "not a store\n"


@pytest.mark.parametrize("args, message", [
    (["merged.sqlite"], "nothing to merge into merged.sqlite: give one or more stores after it (aeframe merge OUT IN...)"),
    (["merged.sqlite", "missing.sqlite"], "Invalid value for 'IN...': File 'missing.sqlite' does not exist."),
    (["merged.sqlite", "folder"], "Invalid value for 'IN...': File 'folder' is a directory."),
    (["folder", "laptop.sqlite"], "Invalid value for 'OUT': File 'folder' is a directory."),
], ids=["no IN", "missing IN", "IN a folder", "OUT a folder"])
def test_usage_errors_exit_2_naming_the_argument(stores, cli, args, message):
    (stores / "folder").mkdir()
    ran = cli("merge", *args, cwd=stores)
    assert ran.returncode == 2
    assert ran.stderr.splitlines()[-1] == f"Error: {message}"
    assert not (stores / "merged.sqlite").exists()


def test_a_store_of_aeframe_0_1_0_merges_and_reports_as_it_did(tmp_path, cli):
    shutil.copy(DATA / "store-0.1.0.sqlite", tmp_path / "old.sqlite")
    before = (tmp_path / "old.sqlite").read_bytes()
    ran = cli("merge", "merged.sqlite", "old.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert _lines(ran.stderr) == ["old.sqlite: 9 attempts, 9 new, 0 already in merged.sqlite",
                                  "merged.sqlite now holds 9 attempts of 9 cells (6 done)"]
    assert (tmp_path / "old.sqlite").read_bytes() == before  # read, not moved to schema 2
    assert _records(tmp_path / "merged.sqlite") == _records(tmp_path / "old.sqlite")
    assert len(_samples(tmp_path / "merged.sqlite")) == 6
    for fmt in ("markdown", "json", "csv"):
        old = cli("report", "--store", "old.sqlite", "--format", fmt, cwd=tmp_path)
        merged = cli("report", "--store", "merged.sqlite", "--format", fmt, cwd=tmp_path)
        assert merged.returncode == 0 and merged.stdout == old.stdout


def test_unreadable_rows_of_an_input_are_named_and_left_out(tmp_path, cli):
    with Store(tmp_path / "in.sqlite") as store:
        store.save(make_record("k1"))
        store.save(make_record("k2", seed=1))
    _edit(tmp_path / "in.sqlite", "UPDATE attempts SET metrics = '{' WHERE key = 'k2'")
    ran = cli("merge", "merged.sqlite", "in.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    lines = _lines(ran.stderr)
    assert lines[0].startswith("warning: in.sqlite: left out the attempt of cell k2 (row 2): metrics is not valid JSON")
    assert lines[1:] == ["in.sqlite: 1 attempt, 1 new, 0 already in merged.sqlite; 1 unreadable left out",
                         "merged.sqlite now holds 1 attempt of 1 cell (1 done)"]
    assert [r.key for r in _records(tmp_path / "merged.sqlite")] == ["k1"]
