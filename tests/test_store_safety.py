"""A store in hostile conditions: through symbolic links, damaged, hand-edited, read-only, on a full
disk, deleted mid-run; and a report that leaves nothing behind. Issue 11's faults 1, 2, 9 (the
store's part), 10, 11 and 12 (the report's part), each through the real CLI on real files."""
from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import stat
import subprocess
import sys

import pytest

from aeframe.store.sqlite_store import Store
from conftest import run_cli
from store_helpers import flaky_registry, require_permissions_bind, run_as_user
from test_store import make_record, snapshot

SHAPES = "shapes[train=256,test=64]"


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    yield from flaky_registry(tmp_path, monkeypatch)


def _bench(*extra: str, store: str = "r.sqlite", technique: str = "baseline") -> tuple[str, ...]:
    # The usual layout: measuring which is faster for each technique is not what these tests are about.
    return ("bench", "-t", technique, "-d", SHAPES, "--epochs", "1", "--no-channels-last", "--store", store, *extra)


def _one_line_error(result, start: str) -> str:
    """The single ``Error: ...`` line of a failed command, which must start with ``start``."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: {start}"), errors[0]
    return errors[0]


def _store_with_records(path, n: int = 3, curve_points: int = 1) -> None:
    curve = [{"epoch": i, "step": i, "train_loss": 0.1, "test_mse": 0.1, "seconds": 1.0 * i}
             for i in range(curve_points)]
    with Store(path) as store:
        for i in range(n):
            store.save(make_record(f"key-{i}", label=f"Technique {i}", finished_at=f"2024-05-01T10:00:{i:02d}",
                                   curve=curve))


# -- the lock (faults 1 and 2) ----------------------------------------------------------------------


def test_two_runs_on_one_store_through_a_symbolic_link_conflict(tmp_path, cli):
    real = tmp_path / "real.sqlite"
    (tmp_path / "link.sqlite").symlink_to(real)
    with Store(real):  # a bench holding the store by its real name
        result = cli(*_bench(store="link.sqlite"), cwd=tmp_path)
    line = _one_line_error(result, f"link.sqlite is in use by aeframe pid {os.getpid()} on host "
                                   f"{socket.gethostname()} since ")
    assert line.endswith("; wait for it or pass --store with another file")
    assert not (tmp_path / "link.sqlite.lock").exists()


def test_a_lock_file_that_is_a_symbolic_link_is_never_followed(tmp_path, cli):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = tmp_path / "s.sqlite.lock"
    lock.symlink_to(victim)
    result = cli(*_bench(store="s.sqlite"), cwd=tmp_path)
    _one_line_error(result, f"the lock file {lock} is a symbolic link, which aeframe never follows; "
                            f"remove it (rm {lock}) and run again")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "s.sqlite").exists()


def test_a_lock_file_with_another_name_is_not_written(tmp_path):
    from aeframe.errors import StoreError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "s.sqlite.lock")
    with pytest.raises(StoreError, match=r"s\.sqlite\.lock has other names \(hard links\)"):
        Store(tmp_path / "s.sqlite")
    assert victim.read_text() == "precious\n"


# -- damaged and hand-edited stores (fault 9) -------------------------------------------------------


def test_a_store_with_a_damaged_page_gives_one_line_errors(tmp_path, cli):
    path = tmp_path / "r.sqlite"
    _store_with_records(path, n=40, curve_points=40)
    size = path.stat().st_size
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    pages = size // page
    assert pages > 10
    with open(path, "r+b") as f:  # a page in the middle, as a bad sector or a stray write leaves it
        f.seek((pages // 2) * page)
        f.write(b"\xff" * page)

    shown = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    line = _one_line_error(shown, "cannot read r.sqlite (database disk image is malformed)")
    assert line.endswith("the file is damaged: restore it from a backup or pass --store with another file")
    ran = cli(*_bench(), cwd=tmp_path)
    _one_line_error(ran, "r.sqlite is damaged (")


def _edit(path, sql: str, *params) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_hand_edited_rows_are_left_out_with_one_warning_each(tmp_path, cli):
    path = tmp_path / "r.sqlite"
    _store_with_records(path, n=5)
    _edit(path, "UPDATE attempts SET metrics = '{' WHERE key = 'key-1'")
    _edit(path, "UPDATE attempts SET config = '[]' WHERE key = 'key-2'")
    _edit(path, "UPDATE attempts SET status = 'weird' WHERE key = 'key-3'")
    for fmt in ("markdown", "json", "csv"):
        shown = cli("report", "--store", "r.sqlite", "--format", fmt, cwd=tmp_path)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        assert "Technique 0" in shown.stdout and "Technique 4" in shown.stdout
        assert not any(f"Technique {i}" in shown.stdout for i in (1, 2, 3))
        warnings = [line for line in shown.stderr.splitlines() if "warning" in line]
        assert warnings == [
            "aeframe: warning: r.sqlite: left out the attempt of cell key-1 (row 2): metrics is not valid JSON "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); fix or delete that row",
            "aeframe: warning: r.sqlite: left out the attempt of cell key-2 (row 3): config is not an object but "
            "list '[]'; fix or delete that row",
            "aeframe: warning: r.sqlite: left out the attempt of cell key-3 (row 4): unknown status 'weird' "
            "(known: done, failed, diverged, skipped); fix or delete that row",
        ]


def test_a_bench_trains_again_a_cell_whose_record_was_spoilt(tmp_path, cli):
    assert cli(*_bench(), cwd=tmp_path).returncode == 0
    _edit(tmp_path / "r.sqlite", "UPDATE attempts SET metrics = '{'")
    again = cli(*_bench(), cwd=tmp_path)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "left out the attempt of cell" in again.stderr and "already done" not in again.stderr
    assert "| Baseline " in again.stdout
    with Store(tmp_path / "r.sqlite", write=False, warn=lambda _: None) as store:
        assert [r.status for r in store.records()] == ["done"]  # the new attempt; the spoilt one is left out


# -- files and disks that cannot be written (faults 9 and 10) ---------------------------------------


def test_a_read_only_store_file_is_named_with_the_fix(tmp_path):
    require_permissions_bind(tmp_path)
    path = tmp_path / "r.sqlite"
    _store_with_records(path)
    path.chmod(0o444)
    ran = run_as_user(*_bench(), cwd=tmp_path)
    _one_line_error(ran, "r.sqlite is read-only; make it writable (chmod u+w r.sqlite) or pass --store with another file")


def test_a_store_on_a_read_only_directory_can_be_reported(tmp_path):
    require_permissions_bind(tmp_path)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    _store_with_records(shelf / "r.sqlite")
    before = snapshot(shelf)
    shelf.chmod(0o555)
    try:
        shown = run_as_user("report", "--store", "shelf/r.sqlite", cwd=tmp_path)
    finally:
        shelf.chmod(0o755)
    assert shown.returncode == 0, shown.stderr
    assert "| Technique 0 " in shown.stdout and "| Technique 2 " in shown.stdout
    assert snapshot(shelf) == before


_KILLED_WRITER = """
import os, sys
sys.path.insert(0, sys.argv[2])
from aeframe.store.sqlite_store import Store
from test_store import make_record
store = Store(sys.argv[1])
store.save(make_record("survivor", label="Survivor"))
os._exit(0)  # as a kill leaves it: the result is in the -wal file only
"""


def test_a_killed_runs_store_on_a_read_only_directory(tmp_path):
    require_permissions_bind(tmp_path)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(shelf / "r.sqlite"), os.path.dirname(__file__)],
                   check=True, timeout=60)
    assert (shelf / "r.sqlite-wal").stat().st_size > 0
    shelf.chmod(0o555)
    try:
        shown = run_as_user("report", "--store", "shelf/r.sqlite", cwd=tmp_path)
        assert shown.returncode == 0 and "| Survivor " in shown.stdout, shown.stderr
        shelf.chmod(0o755)
        (shelf / "r.sqlite-shm").unlink()
        shelf.chmod(0o555)
        refused = run_as_user("report", "--store", "shelf/r.sqlite", cwd=tmp_path)
    finally:
        shelf.chmod(0o755)
    _one_line_error(refused, "cannot read shelf/r.sqlite: part of it is in shelf/r.sqlite-wal, which SQLite can only "
                             "open by creating shelf/r.sqlite-shm, and its directory is read-only; copy both files")


def _small_files() -> None:
    # Writes past 16 KiB fail with EFBIG, as on a full disk; without SIGXFSZ killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))


def test_a_full_disk_when_the_store_is_created_gives_a_one_line_error(tmp_path):
    ran = run_as_user(*_bench(), cwd=tmp_path, preexec=_small_files)
    line = _one_line_error(ran, "cannot create the results store r.sqlite (")
    assert line.endswith("make room on its disk or pass --store with a file on another disk")
    again = run_cli(*_bench(), cwd=tmp_path)  # with room, the half-made file becomes a store
    assert again.returncode == 0, again.stderr


def test_a_store_name_longer_than_a_file_name_can_be(tmp_path, cli):
    name = "r" * 300 + ".sqlite"
    for args in (_bench(store=name), ("report", "--store", name)):
        result = cli(*args, cwd=tmp_path)
        _one_line_error(result, f"cannot use {name} as a results store (File name too long: a file name has at "
                                "most 255 bytes); pass --store with another path")
    assert list(tmp_path.iterdir()) == []


# -- a report leaves nothing behind (fault 12) ------------------------------------------------------


def _wal_database(path, tables: str, rows: str = "") -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(tables + rows)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["store", "foreign", "newer", "text"])
def test_a_report_leaves_no_file_next_to_a_store_it_read_or_refused(tmp_path, cli, kind):
    path = tmp_path / "r.sqlite"
    if kind == "store":
        _store_with_records(path)
    elif kind == "foreign":
        _wal_database(path, "CREATE TABLE customers (name TEXT);", "INSERT INTO customers VALUES ('ada');")
    elif kind == "newer":
        _wal_database(path, "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
                      "INSERT INTO meta VALUES ('format', 'aeframe-results'), ('schema_version', '3');")
    else:
        path.write_text("notes\n")
    before = snapshot(tmp_path)
    shown = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    assert (shown.returncode == 0) == (kind == "store"), shown.stderr
    assert snapshot(tmp_path) == before


def test_a_report_reads_what_a_running_bench_has_saved(tmp_path, cli):
    with Store(tmp_path / "r.sqlite") as writer:
        writer.save(make_record("first", label="First"))
        assert cli("report", "--store", "r.sqlite", cwd=tmp_path).stdout.count("| First ") == 1
        writer.save(make_record("second", label="Second", finished_at="2024-05-01T11:00:00"))
        shown = cli("report", "--store", "r.sqlite", cwd=tmp_path)
        assert "| First " in shown.stdout and "| Second " in shown.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite", "r.sqlite.lock"]


def test_a_reader_that_opened_an_idle_store_sees_what_a_bench_starting_later_saves(tmp_path):
    path = tmp_path / "r.sqlite"
    _store_with_records(path, n=1)
    with Store(path, write=False) as reader:  # no writer: read as an immutable file
        assert [r.key for r in reader.records()] == ["key-0"]
        with Store(path) as writer:
            writer.save(make_record("late", finished_at="2024-05-01T12:00:00"))
            assert [r.key for r in reader.records()] == ["key-0", "late"]


# -- a store deleted during a run (fault 11) --------------------------------------------------------


def test_a_store_deleted_mid_run_is_recreated_with_the_runs_results_and_the_run_fails(tmp_path, cli, flaky):
    path = tmp_path / "r.sqlite"
    _store_with_records(path, n=1)  # an earlier result, which the deletion takes away
    result = cli("bench", "-t", "baseline", "-t", "flaky", "-d", SHAPES, "--epochs", "1", "--no-channels-last",
                 "--store", "r.sqlite", cwd=tmp_path, env={"AEFRAME_TEST_DELETE": str(path)}, registry=flaky)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "deleted or replaced" in line]
    assert warnings == [
        "aeframe: warning: r.sqlite was deleted or replaced during this run: the 1 result this run holds is saved "
        "again in the file now at that path, and the run goes on there; the results stored there before this run "
        "are lost with the old file"]
    with Store(path, write=False) as store:
        assert [(r.config.label, r.status) for r in store.records()] == [("Baseline", "done"), ("Flaky", "done")]
        assert len(store.samples(r.key for r in store.records())) == 2
    assert stat.S_ISREG(os.stat(tmp_path / "r.sqlite.lock").st_mode)
