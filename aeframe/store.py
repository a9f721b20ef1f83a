"""The results store: one SQLite file holding one row per benchmark cell.

Every finished cell is committed on its own, so a run that is interrupted (Ctrl-C, SIGKILL, a
power cut) keeps every cell but the one in flight, and the next run skips what is already done.
The file is self-describing (a ``meta`` table with a marker and a schema version) so that a
mistyped ``--store`` never turns someone else's database into ours.

The ``samples`` table (a cell's reconstructions of a few test images, for the report's pictures)
came later without a new schema version: it only adds a table, which older aeframes ignore, and a
store written before it gets the table the next time a bench opens it.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from aeframe.errors import StoreError
from aeframe.record import DONE, CellConfig, CellRecord
from aeframe.samples import Samples

if TYPE_CHECKING:
    import torch

FORMAT_MARKER = "aeframe-results"
SCHEMA_VERSION = 1

_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key         TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    label       TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    seed        INTEGER,
    config      TEXT NOT NULL,
    error       TEXT,
    metrics     TEXT NOT NULL,
    stats       TEXT NOT NULL,
    curve       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    key             TEXT PRIMARY KEY,
    indices         TEXT NOT NULL,
    shape           TEXT NOT NULL,
    originals       BLOB NOT NULL,
    reconstructions BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_by_finished_at ON cells (finished_at);
CREATE INDEX IF NOT EXISTS cells_by_dataset_label ON cells (dataset, label);
"""

_COLUMNS = (
    "key, status, label, dataset, seed, config, error, metrics, stats, curve, started_at, finished_at"
)


class Store:
    """A results store at ``path``.

    With ``write=True`` (the default) a missing file is created with the schema, and the store is
    locked against other writers until :meth:`close`. With ``write=False`` the file must already
    exist, is opened read-only and is not locked, so ``aeframe report`` can read a store while a
    benchmark is still writing it.
    """

    def __init__(self, path: str | Path, *, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write
        self._name = str(path)
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None

        self._check_existing_file()
        if not write:
            self._conn = self._connect(read_only=True)
            try:
                self._has_schema = self._inspect(self._conn)
            except BaseException:
                self.close()
                raise
            return

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._conn = self._connect(read_only=False)
            self._inspect(self._conn)
            self._create_schema(self._conn)
            self._has_schema = True
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _check_existing_file(self) -> None:
        """Refuse a path that is clearly not ours before SQLite (or a lock file) touches anything."""
        if not self.path.exists():
            if not self.write:
                raise StoreError(
                    f"no results store at {self._name}; run aeframe bench first or pass --store"
                )
            return
        if not self.path.is_file():
            raise StoreError(
                f"{self._name} is not a file, so it cannot be a results store; "
                "pass --store with a file path"
            )
        try:
            with self.path.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise StoreError(f"cannot read {self._name} ({e.strerror}); check its permissions") from e
        # An empty file is what `touch` leaves behind: fine to turn into a store.
        if header and header != _SQLITE_HEADER:
            raise self._not_ours("not an SQLite file")
        if header:
            # Look inside read-only first, so that a foreign database is never altered, and no
            # lock file is left next to it.
            probe = self._connect(read_only=True)
            try:
                self._inspect(probe)
            finally:
                probe.close()

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        mode = "ro" if read_only else "rwc"
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        try:
            # Autocommit at the driver level: transactions are opened explicitly where needed.
            conn = sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {self._name} ({e}); check the path and its permissions") from e
        return conn

    def _inspect(self, conn: sqlite3.Connection) -> bool:
        """True if the database holds our schema, False if it is empty; StoreError otherwise."""
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return False
            if "meta" not in tables:
                raise self._not_ours("no aeframe marker")
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise self._not_ours(f"unreadable: {e}") from e
        if meta.get("format") != FORMAT_MARKER:
            raise self._not_ours("no aeframe marker")
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise self._not_ours("no schema version") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self._name} was written by a newer aeframe (results schema {version}, this "
                f"aeframe reads up to {SCHEMA_VERSION}); upgrade aeframe to use it"
            )
        return True

    def _not_ours(self, why: str) -> StoreError:
        return StoreError(
            f"{self._name} is not an aeframe results store ({why}); pass --store with another file"
        )

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # WAL lets `aeframe report` read while a bench writes, and makes each commit one append.
        conn.execute("PRAGMA journal_mode = WAL")
        with _transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('format', ?), ('schema_version', ?)",
                (FORMAT_MARKER, str(SCHEMA_VERSION)),
            )

    def _acquire_lock(self) -> None:
        """Hold an exclusive flock on ``PATH.lock``; the kernel drops it if the process dies."""
        lock_path = f"{self.path}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(
                f"cannot create the lock file {lock_path} ({e.strerror}); "
                "check the directory's permissions or pass --store with another file"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f"pid {holder}" if holder.isdigit() else "pid unknown"
            raise StoreError(
                f"{self._name} is in use by another aeframe run ({pid}); "
                "wait for it or pass --store with another file"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    # -- reading and writing -------------------------------------------------------------------

    def find_done(self, key: str) -> CellRecord | None:
        """The record stored under ``key`` if it finished with status ``done``, else None."""
        if not self._has_schema:
            return None
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM cells WHERE key = ? AND status = ?", (key, DONE)
        ).fetchone()
        return _from_row(row) if row else None

    def save(self, record: CellRecord) -> None:
        """Commit ``record``, replacing any earlier record with the same key."""
        if not self.write:
            raise StoreError(f"{self._name} was opened read-only; open it with write=True to save")
        config = record.config
        row = (
            record.key,
            record.status,
            config.label,
            config.dataset.name,
            config.seed,
            json.dumps(config.to_json(), sort_keys=True),
            record.error,
            json.dumps(record.metrics),
            json.dumps(record.stats),
            json.dumps(record.curve),
            record.started_at,
            record.finished_at,
        )
        try:
            with _transaction(self._db):
                self._db.execute(
                    f"INSERT OR REPLACE INTO cells ({_COLUMNS}) VALUES ({', '.join('?' * len(row))})",
                    row,
                )
                # A rerun's cell must not keep the pictures of the run it replaces.
                self._db.execute("DELETE FROM samples WHERE key = ?", (record.key,))
                if record.samples is not None:
                    self._db.execute(
                        "INSERT INTO samples (key, indices, shape, originals, reconstructions) VALUES (?, ?, ?, ?, ?)",
                        _samples_row(record.key, record.samples),
                    )
        except sqlite3.OperationalError as e:
            # Disk full, read-only file system, a stale lock from a non-aeframe program, ...
            raise StoreError(f"cannot save a result to {self._name} ({e}); fix that and rerun") from e

    def records(self) -> list[CellRecord]:
        """Every record, oldest ``finished_at`` first."""
        if not self._has_schema:
            return []
        query = f"SELECT {_COLUMNS} FROM cells ORDER BY finished_at, rowid"
        return [_from_row(row) for row in self._db.execute(query)]

    def samples(self, keys: Iterable[str]) -> dict[str, Samples]:
        """Key -> the sample reconstructions stored with that cell, for those of ``keys`` that have them."""
        if not self._has_schema or not self._has_samples_table():
            return {}
        # One JSON parameter instead of one placeholder per key: no limit on how many.
        rows = self._db.execute(
            "SELECT key, indices, shape, originals, reconstructions FROM samples "
            "WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(list(keys)),),
        )
        return {row[0]: _samples_from_row(row) for row in rows}

    def _has_samples_table(self) -> bool:
        # A store from before the table existed, opened read-only, does not have it.
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'samples'"
        return self._db.execute(query).fetchone() is not None

    def close(self) -> None:
        """Close the database and release the writer's lock; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self._name} is closed; open a new Store to use it")
        return self._conn


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the body raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _samples_row(key: str, samples: Samples) -> tuple:
    def raw(images: torch.Tensor) -> bytes:
        return images.contiguous().numpy().tobytes()

    shape = list(samples.originals.shape)
    return key, json.dumps(samples.indices), json.dumps(shape), raw(samples.originals), raw(samples.reconstructions)


def _samples_from_row(row: tuple) -> Samples:
    _key, indices, shape, originals, reconstructions = row
    shape = json.loads(shape)

    # Only pictures read samples, so only they pay for importing torch.
    import torch

    def images(raw: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape)

    return Samples(json.loads(indices), images(originals), images(reconstructions))


def _from_row(row: tuple) -> CellRecord:
    key, status, _label, _dataset, _seed, config, error, metrics, stats, curve, started, finished = row
    return CellRecord(
        key=key,
        config=CellConfig.from_json(json.loads(config), status),
        status=status,
        error=error,
        metrics=json.loads(metrics),
        stats=json.loads(stats),
        curve=json.loads(curve),
        started_at=started,
        finished_at=finished,
    )
